//! Text people type: search queries (with the typos, synonyms and odd casing a query rewriter
//! must cope with), reviews whose tone matches their rating, return reasons and tickets.

use crate::catalog::Catalog;
use crate::event::Channel;
use crate::sampling::{SimRng, chance, index, pick, unit};

/// Share of queries with one typo.
const TYPO_RATE: f64 = 0.1;

pub(crate) struct Query {
    pub text: String,
    /// What the shopper meant to type: lower case, no typo. Retyped after a zero-result page.
    pub intended: String,
    /// The brand the shopper named, which the shop's search boosts.
    pub brand: Option<usize>,
    /// The item whose full title was typed.
    pub exact_item: Option<u32>,
    pub has_typo: bool,
}

/// A query a shopper looking for something like `item` would type.
pub(crate) fn query_for(item: u32, catalog: &Catalog, rng: &mut SimRng) -> Query {
    let entry = catalog.item(item);
    let leaf = catalog.leaves[entry.leaf].def;
    let term = *pick(rng, leaf.query_terms);
    let mut brand = None;
    let mut exact_item = None;
    let mut text = match unit(rng) {
        r if r < 0.35 => term.to_owned(),
        r if r < 0.55 => {
            brand = Some(entry.brand_index);
            format!("{} {term}", entry.brand.to_lowercase())
        }
        r if r < 0.72 => format!("{} {term}", pick(rng, leaf.adjectives).to_lowercase()),
        r if r < 0.82 => match entry.attributes.get("color") {
            Some(color) => format!("{color} {term}"),
            None => term.to_owned(),
        },
        r if r < 0.92 => {
            brand = Some(entry.brand_index);
            exact_item = Some(item);
            entry.title.to_lowercase()
        }
        r if r < 0.96 => format!(
            "{} {term}",
            pick(rng, &["cheap", "best", "new", "discount"])
        ),
        _ => format!(
            "{term} {}",
            pick(
                rng,
                &["sale", "deal", "gift", "for kids", "for men", "for women"]
            )
        ),
    };
    let intended = text.clone();
    let mut has_typo = false;
    if chance(rng, TYPO_RATE) {
        let misspelt = with_typo(&text, rng);
        has_typo = misspelt != text;
        text = misspelt;
    }
    text = with_casing(&text, rng);
    if chance(rng, 0.04) {
        // Stray whitespace, which normalisation must trim and collapse.
        text = match index(rng, 3) {
            0 => format!(" {text}"),
            1 => format!("{text} "),
            _ => text.replacen(' ', "  ", 1),
        };
    }
    Query {
        text,
        intended,
        brand,
        exact_item,
        has_typo,
    }
}

/// The same query typed again carefully, after it found nothing.
pub(crate) fn retype(query: Query, rng: &mut SimRng) -> Query {
    Query {
        text: with_casing(&query.intended, rng),
        has_typo: false,
        ..query
    }
}

/// One human slip in the longest-enough word: swapped, dropped, doubled or neighbouring key.
fn with_typo(text: &str, rng: &mut SimRng) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let candidates: Vec<usize> = (0..words.len())
        .filter(|&word| {
            words[word].len() >= 4 && words[word].bytes().all(|b| b.is_ascii_alphabetic())
        })
        .collect();
    let Some(&target) = candidates.get(index(rng, candidates.len().max(1))) else {
        return text.to_owned();
    };
    let mut letters: Vec<u8> = words[target].bytes().collect();
    let at = 1 + index(rng, letters.len() - 2); // keep the first letter, as most typos do
    match index(rng, 4) {
        0 if letters[at] != letters[at + 1] => letters.swap(at, at + 1),
        1 => {
            letters.remove(at);
        }
        2 => letters.insert(at, letters[at]),
        _ => {
            let neighbours = keyboard_neighbours(letters[at]);
            letters[at] = neighbours[index(rng, neighbours.len())];
        }
    }
    let typo = String::from_utf8(letters).expect("ascii letters stay ascii");
    let mut words: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
    words[target] = typo;
    words.join(" ")
}

fn keyboard_neighbours(letter: u8) -> &'static [u8] {
    match letter.to_ascii_lowercase() {
        b'q' => b"wa",
        b'w' => b"qes",
        b'e' => b"wrd",
        b'r' => b"etf",
        b't' => b"ryg",
        b'y' => b"tuh",
        b'u' => b"yij",
        b'i' => b"uok",
        b'o' => b"ipl",
        b'p' => b"ol",
        b'a' => b"qsz",
        b's' => b"adw",
        b'd' => b"sfe",
        b'f' => b"dgr",
        b'g' => b"fht",
        b'h' => b"gjy",
        b'j' => b"hku",
        b'k' => b"jli",
        b'l' => b"ko",
        b'z' => b"xa",
        b'x' => b"zcs",
        b'c' => b"xvd",
        b'v' => b"cbf",
        b'b' => b"vng",
        b'n' => b"bmh",
        _ => b"mnj",
    }
}

fn with_casing(text: &str, rng: &mut SimRng) -> String {
    match unit(rng) {
        r if r < 0.75 => text.to_owned(),
        r if r < 0.89 => text
            .split(' ')
            .map(|word| {
                let mut chars = word.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        r if r < 0.93 => text.to_uppercase(),
        _ => {
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// Review text whose tone follows the rating (1–5).
pub(crate) fn review_text(rating: u8, noun: &str, top_slug: &str, rng: &mut SimRng) -> String {
    let noun = noun.to_lowercase();
    let opener = match rating {
        5 => *pick(
            rng,
            &[
                "Absolutely love it!",
                "Exceeded my expectations.",
                "Best purchase this year.",
                "Fantastic, highly recommend.",
            ],
        ),
        4 => *pick(
            rng,
            &[
                "Really good overall.",
                "Very happy with it.",
                "Solid choice for the price.",
                "Works well.",
            ],
        ),
        3 => *pick(
            rng,
            &[
                "It's okay.",
                "Decent, nothing special.",
                "Mixed feelings about this one.",
                "Average for the price.",
            ],
        ),
        2 => *pick(
            rng,
            &[
                "Disappointed.",
                "Not great.",
                "Expected more.",
                "Below average.",
            ],
        ),
        _ => *pick(
            rng,
            &[
                "Terrible, do not buy.",
                "Complete waste of money.",
                "Awful.",
                "Very poor quality.",
            ],
        ),
    };
    let detail = match rating {
        4 | 5 => pick(
            rng,
            &[
                "The build quality of this {noun} is excellent.",
                "Delivery was fast and the packaging was neat.",
                "Looks exactly like the pictures.",
                "Great value for money.",
                "I use my {noun} every day and it still feels new.",
            ],
        )
        .to_string(),
        3 => pick(
            rng,
            &[
                "The {noun} does the job but the finish could be better.",
                "Good design, but delivery took ages.",
                "Fine for occasional use.",
                "Some parts feel cheaper than the price suggests.",
            ],
        )
        .to_string(),
        _ if top_slug == "fashion" && chance(rng, 0.4) => pick(
            rng,
            &[
                "Sizing is way off, the {noun} runs two sizes small.",
                "The colour is nothing like the photos.",
            ],
        )
        .to_string(),
        _ => pick(
            rng,
            &[
                "The {noun} stopped working after a few days.",
                "The material feels cheap and flimsy.",
                "Nothing like the description.",
                "Arrived scratched and customer service did not help.",
            ],
        )
        .to_string(),
    };
    let detail = detail.replace("{noun}", &noun);
    if chance(rng, 0.3) {
        let closer = if rating >= 4 {
            "Would buy again."
        } else if rating == 3 {
            "Might look elsewhere next time."
        } else {
            "Returning it."
        };
        format!("{opener} {detail} {closer}")
    } else {
        format!("{opener} {detail}")
    }
}

/// Why an item came back; poor quality means defects, fashion means fit.
pub(crate) fn return_reason(quality: f64, top_slug: &str, rng: &mut SimRng) -> String {
    if top_slug == "fashion" && chance(rng, 0.55) {
        return (*pick(
            rng,
            &[
                "Too small",
                "Too large",
                "Does not fit as expected",
                "Colour differs from the photos",
            ],
        ))
        .to_owned();
    }
    let reason = if chance(rng, 1.0 - quality) {
        *pick(
            rng,
            &[
                "Item arrived damaged",
                "Stopped working after a few days",
                "Quality not as expected",
                "Not as described",
                "Missing parts",
            ],
        )
    } else {
        *pick(
            rng,
            &[
                "Changed my mind",
                "Ordered by mistake",
                "Found a better price elsewhere",
                "Arrived too late",
                "No longer needed",
            ],
        )
    };
    reason.to_owned()
}

/// A support ticket about an order: what the customer wrote, or the agent's call summary.
pub(crate) fn order_ticket(channel: Channel, returned: bool, rng: &mut SimRng) -> String {
    let (written, spoken) = if returned && chance(rng, 0.7) {
        (
            "I sent an item back two weeks ago and still have not received my refund.",
            "Customer asks about a refund for a returned item, waiting two weeks.",
        )
    } else {
        *pick(
            rng,
            &[
                (
                    "Where is my order? The tracking page has not updated for days.",
                    "Customer asks where the order is, tracking not updated for days.",
                ),
                (
                    "My parcel arrived damaged. How do I get a replacement?",
                    "Customer reports a damaged parcel and wants a replacement.",
                ),
                (
                    "I was charged twice for the same order, please refund one payment.",
                    "Customer was charged twice and wants one payment refunded.",
                ),
                (
                    "Can I still change the delivery address?",
                    "Customer wants to change the delivery address.",
                ),
                (
                    "I received the wrong item in my package.",
                    "Customer received the wrong item.",
                ),
                (
                    "The invoice is missing from my order, can you email it?",
                    "Customer needs a copy of the invoice.",
                ),
            ],
        )
    };
    match channel {
        Channel::Phone => format!("Call summary: {spoken}"),
        Channel::Email | Channel::Chat => written.to_owned(),
    }
}

/// A question not tied to an order, asked while browsing.
pub(crate) fn general_ticket(noun: &str, rng: &mut SimRng) -> String {
    match index(rng, 5) {
        0 => format!("When will the {} be back in stock?", noun.to_lowercase()),
        1 => "Do you ship to Switzerland?".to_owned(),
        2 => "How do I reset my password?".to_owned(),
        3 => "Is there a discount for students?".to_owned(),
        _ => "How can I delete my account?".to_owned(),
    }
}

pub(crate) fn ticket_channel(rng: &mut SimRng) -> Channel {
    match unit(rng) {
        r if r < 0.5 => Channel::Email,
        r if r < 0.85 => Channel::Chat,
        _ => Channel::Phone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{Stream, rng_for};

    #[test]
    fn a_typo_changes_the_word_but_keeps_its_first_letter() {
        let mut rng = rng_for(3, Stream::Traffic);
        let mut changed = 0;
        for _ in 0..200 {
            let typo = with_typo("wireless headphones", &mut rng);
            let words: Vec<&str> = typo.split(' ').collect();
            assert_eq!(words.len(), 2);
            assert!(
                words[0].starts_with('w') && words[1].starts_with('h'),
                "{typo}"
            );
            if typo != "wireless headphones" {
                changed += 1;
            }
        }
        assert!(
            changed > 180,
            "only {changed} of 200 typos changed the text"
        );
    }

    #[test]
    fn review_tone_follows_the_rating() {
        let mut rng = rng_for(4, Stream::Traffic);
        let happy = review_text(5, "Headphones", "electronics", &mut rng);
        let angry = review_text(1, "Headphones", "electronics", &mut rng);
        let positive = ["love", "Exceeded", "Best", "Fantastic"];
        let negative = ["Terrible", "waste", "Awful", "poor"];
        assert!(positive.iter().any(|word| happy.contains(word)), "{happy}");
        assert!(negative.iter().any(|word| angry.contains(word)), "{angry}");
        assert!(!happy.contains("{noun}") && !angry.contains("{noun}"));
    }
}
