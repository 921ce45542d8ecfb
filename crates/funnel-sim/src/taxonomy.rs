//! The fixed category tree the catalog is drawn from: eight top-level categories, three
//! sub-categories each, three leaves each, with the words titles and queries are built from.
//!
//! Brand names are invented so that generated data never looks like a real shop's.

pub(crate) struct TopCategory {
    pub slug: &'static str,
    pub brands: [&'static str; 6],
    pub subs: [SubCategory; 3],
    /// Fashion sizes make returns likelier ("too small"); see `aftersales`.
    pub return_bias: f64,
}

pub(crate) struct SubCategory {
    pub slug: &'static str,
    pub leaves: [Leaf; 3],
}

pub(crate) struct Leaf {
    pub slug: &'static str,
    /// The product noun used in titles, e.g. "Headphones".
    pub noun: &'static str,
    /// Typical price in major currency units; item prices scatter log-normally around it.
    pub median_price: f64,
    pub adjectives: &'static [&'static str],
    /// What shoppers type for this leaf; the first is the noun itself, the others are the
    /// synonyms a query rewriter should learn from clicks ("trainers" means sneakers).
    pub query_terms: &'static [&'static str],
}

const fn leaf(
    slug: &'static str,
    noun: &'static str,
    median_price: f64,
    adjectives: &'static [&'static str],
    query_terms: &'static [&'static str],
) -> Leaf {
    Leaf {
        slug,
        noun,
        median_price,
        adjectives,
        query_terms,
    }
}

#[rustfmt::skip] // a table reads better unwrapped
pub(crate) const TOP_CATEGORIES: [TopCategory; 8] = [
    TopCategory {
        slug: "electronics",
        brands: ["Sonora", "Voltix", "Auralis", "Pixelon", "Nimbus", "Kestrel"],
        return_bias: 0.0,
        subs: [
            SubCategory {
                slug: "audio",
                leaves: [
                    leaf("headphones", "Headphones", 89.0, &["Wireless", "Noise-Cancelling", "Over-Ear", "Studio", "Foldable"], &["headphones", "headset", "over ear headphones"]),
                    leaf("earbuds", "Earbuds", 59.0, &["True Wireless", "Sport", "Waterproof", "Compact"], &["earbuds", "earphones", "in ear headphones"]),
                    leaf("speakers", "Bluetooth Speaker", 69.0, &["Portable", "Waterproof", "Smart", "Compact"], &["bluetooth speaker", "speaker", "portable speaker"]),
                ],
            },
            SubCategory {
                slug: "computers",
                leaves: [
                    leaf("laptops", "Laptop", 899.0, &["Ultralight", "14-Inch", "Gaming", "Business", "16-Inch"], &["laptop", "notebook", "gaming laptop"]),
                    leaf("monitors", "Monitor", 229.0, &["27-Inch", "4K", "Curved", "Ultrawide"], &["monitor", "screen", "4k monitor"]),
                    leaf("keyboards", "Keyboard", 59.0, &["Mechanical", "Wireless", "Backlit", "Compact"], &["keyboard", "mechanical keyboard"]),
                ],
            },
            SubCategory {
                slug: "phones",
                leaves: [
                    leaf("smartphones", "Smartphone", 449.0, &["5G", "Dual-SIM", "128GB", "256GB"], &["smartphone", "phone", "mobile phone"]),
                    leaf("cases", "Phone Case", 17.0, &["Slim", "Rugged", "Clear", "Leather"], &["phone case", "case", "phone cover"]),
                    leaf("chargers", "Charger", 24.0, &["Fast", "Wireless", "USB-C", "65W"], &["charger", "usb c charger", "wireless charger"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "fashion",
        brands: ["Urbanstep", "Northwear", "Velora", "Marlow", "Tidewell", "Copperfield"],
        return_bias: 0.06,
        subs: [
            SubCategory {
                slug: "shoes",
                leaves: [
                    leaf("sneakers", "Sneakers", 89.0, &["Running", "Lightweight", "Leather", "Retro", "Everyday"], &["sneakers", "trainers", "running shoes"]),
                    leaf("boots", "Boots", 129.0, &["Chelsea", "Waterproof", "Hiking", "Ankle"], &["boots", "chelsea boots", "winter boots"]),
                    leaf("sandals", "Sandals", 39.0, &["Leather", "Summer", "Slide", "Comfort"], &["sandals", "slides", "flip flops"]),
                ],
            },
            SubCategory {
                slug: "clothing",
                leaves: [
                    leaf("t-shirts", "T-Shirt", 19.0, &["Organic Cotton", "Oversized", "Slim-Fit", "Graphic"], &["t-shirt", "tee", "tshirt"]),
                    leaf("jeans", "Jeans", 59.0, &["Slim", "Straight-Leg", "Stretch", "Relaxed"], &["jeans", "denim", "slim jeans"]),
                    leaf("jackets", "Jacket", 119.0, &["Puffer", "Rain", "Denim", "Lightweight"], &["jacket", "coat", "rain jacket"]),
                ],
            },
            SubCategory {
                slug: "accessories",
                leaves: [
                    leaf("bags", "Backpack", 55.0, &["Everyday", "Laptop", "Waterproof", "Leather"], &["backpack", "bag", "laptop bag"]),
                    leaf("watches", "Watch", 149.0, &["Chronograph", "Minimalist", "Automatic", "Smart"], &["watch", "wristwatch", "smartwatch"]),
                    leaf("sunglasses", "Sunglasses", 45.0, &["Polarized", "Aviator", "Round", "Sport"], &["sunglasses", "shades"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "home",
        brands: ["Hearthly", "Casa Verde", "Oakridge", "Brightnest", "Kitchara", "Linden & Co"],
        return_bias: 0.0,
        subs: [
            SubCategory {
                slug: "kitchen",
                leaves: [
                    leaf("cookware", "Frying Pan", 45.0, &["Non-Stick", "Cast-Iron", "Stainless", "Ceramic"], &["frying pan", "pan", "skillet"]),
                    leaf("knives", "Chef Knife", 49.0, &["Japanese", "Forged", "8-Inch", "Damascus"], &["chef knife", "kitchen knife", "knife"]),
                    leaf("coffee-makers", "Coffee Maker", 89.0, &["Drip", "Espresso", "Programmable", "Compact"], &["coffee maker", "coffee machine", "espresso machine"]),
                ],
            },
            SubCategory {
                slug: "furniture",
                leaves: [
                    leaf("chairs", "Office Chair", 159.0, &["Ergonomic", "Mesh", "Swivel", "Adjustable"], &["office chair", "desk chair", "chair"]),
                    leaf("desks", "Desk", 219.0, &["Standing", "Oak", "Compact", "Height-Adjustable"], &["desk", "standing desk", "computer desk"]),
                    leaf("shelves", "Bookshelf", 89.0, &["5-Tier", "Wall-Mounted", "Oak", "Industrial"], &["bookshelf", "shelf", "bookcase"]),
                ],
            },
            SubCategory {
                slug: "decor",
                leaves: [
                    leaf("lamps", "Table Lamp", 39.0, &["LED", "Dimmable", "Ceramic", "Vintage"], &["table lamp", "lamp", "desk lamp"]),
                    leaf("rugs", "Rug", 79.0, &["Wool", "Washable", "Shaggy", "Vintage"], &["rug", "carpet", "area rug"]),
                    leaf("candles", "Scented Candle", 15.0, &["Soy", "Vanilla", "Lavender", "Large"], &["scented candle", "candle"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "beauty",
        brands: ["Lumiere", "Bloomskin", "Purelle", "Aurea", "Velvetine", "Glowra"],
        return_bias: 0.0,
        subs: [
            SubCategory {
                slug: "skincare",
                leaves: [
                    leaf("moisturizers", "Moisturizer", 24.0, &["Hydrating", "Daily", "Night", "Oil-Free"], &["moisturizer", "face cream", "moisturiser"]),
                    leaf("serums", "Face Serum", 32.0, &["Vitamin C", "Hyaluronic", "Retinol", "Brightening"], &["face serum", "serum", "vitamin c serum"]),
                    leaf("sunscreen", "Sunscreen", 16.0, &["SPF 50", "Mineral", "Sport", "Tinted"], &["sunscreen", "spf 50", "sun cream"]),
                ],
            },
            SubCategory {
                slug: "haircare",
                leaves: [
                    leaf("shampoo", "Shampoo", 9.0, &["Volumizing", "Anti-Dandruff", "Sulfate-Free", "Repair"], &["shampoo", "dandruff shampoo"]),
                    leaf("conditioner", "Conditioner", 9.0, &["Repair", "Moisture", "Leave-In", "Color-Safe"], &["conditioner", "hair conditioner"]),
                    leaf("hair-dryers", "Hair Dryer", 59.0, &["Ionic", "Compact", "Professional", "Travel"], &["hair dryer", "hairdryer", "blow dryer"]),
                ],
            },
            SubCategory {
                slug: "makeup",
                leaves: [
                    leaf("lipstick", "Lipstick", 17.0, &["Matte", "Long-Lasting", "Satin", "Nude"], &["lipstick", "matte lipstick", "lip colour"]),
                    leaf("mascara", "Mascara", 14.0, &["Waterproof", "Volumizing", "Lengthening"], &["mascara", "waterproof mascara"]),
                    leaf("foundation", "Foundation", 27.0, &["Liquid", "Matte", "Full-Coverage", "Lightweight"], &["foundation", "liquid foundation"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "sports",
        brands: ["Peakline", "Stridex", "Trailborn", "Corefit", "Ridgeway", "Velocita"],
        return_bias: 0.02,
        subs: [
            SubCategory {
                slug: "fitness",
                leaves: [
                    leaf("yoga-mats", "Yoga Mat", 29.0, &["Non-Slip", "Extra-Thick", "Eco", "Travel"], &["yoga mat", "exercise mat", "mat"]),
                    leaf("dumbbells", "Dumbbell Set", 59.0, &["Adjustable", "Neoprene", "Hex", "20kg"], &["dumbbells", "weights", "dumbbell set"]),
                    leaf("resistance-bands", "Resistance Bands", 19.0, &["Heavy-Duty", "Fabric", "5-Piece", "Loop"], &["resistance bands", "exercise bands"]),
                ],
            },
            SubCategory {
                slug: "outdoor",
                leaves: [
                    leaf("tents", "Tent", 149.0, &["2-Person", "Ultralight", "Waterproof", "Family"], &["tent", "camping tent"]),
                    leaf("sleeping-bags", "Sleeping Bag", 69.0, &["Down", "3-Season", "Compact", "Mummy"], &["sleeping bag"]),
                    leaf("trekking-poles", "Trekking Poles", 45.0, &["Carbon", "Foldable", "Adjustable"], &["trekking poles", "hiking poles", "walking sticks"]),
                ],
            },
            SubCategory {
                slug: "cycling",
                leaves: [
                    leaf("helmets", "Bike Helmet", 59.0, &["Road", "MIPS", "Lightweight", "Urban"], &["bike helmet", "cycling helmet", "helmet"]),
                    leaf("bike-lights", "Bike Light Set", 24.0, &["Rechargeable", "LED", "Waterproof"], &["bike light", "bicycle lights"]),
                    leaf("jerseys", "Cycling Jersey", 49.0, &["Breathable", "Long-Sleeve", "Aero", "Team"], &["cycling jersey", "bike jersey"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "toys",
        brands: ["Playnest", "Brickle", "Wonderkin", "Tumbletoy", "Gigglebox", "Cubiq"],
        return_bias: 0.0,
        subs: [
            SubCategory {
                slug: "building",
                leaves: [
                    leaf("building-sets", "Building Set", 39.0, &["Creative", "City", "Space", "500-Piece"], &["building set", "building blocks", "bricks"]),
                    leaf("magnetic-tiles", "Magnetic Tiles", 45.0, &["60-Piece", "Rainbow", "STEM"], &["magnetic tiles", "magnet blocks"]),
                    leaf("marble-runs", "Marble Run", 35.0, &["Deluxe", "Glow", "Wooden"], &["marble run"]),
                ],
            },
            SubCategory {
                slug: "games",
                leaves: [
                    leaf("board-games", "Board Game", 34.0, &["Family", "Strategy", "Cooperative", "Party"], &["board game", "family game", "strategy game"]),
                    leaf("puzzles", "Jigsaw Puzzle", 19.0, &["1000-Piece", "Panorama", "Landscape", "Kids"], &["jigsaw puzzle", "puzzle", "1000 piece puzzle"]),
                    leaf("card-games", "Card Game", 12.0, &["Party", "Pocket", "Classic"], &["card game", "cards"]),
                ],
            },
            SubCategory {
                slug: "outdoor-play",
                leaves: [
                    leaf("scooters", "Kick Scooter", 69.0, &["Foldable", "3-Wheel", "LED", "Kids"], &["kick scooter", "scooter"]),
                    leaf("water-blasters", "Water Blaster", 15.0, &["Pump-Action", "Long-Range", "Mini"], &["water blaster", "water gun", "water pistol"]),
                    leaf("plush", "Plush Bear", 18.0, &["Soft", "Giant", "Cuddly"], &["plush bear", "teddy bear", "stuffed animal"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "books",
        brands: ["Harbor House", "Quillmark", "Lantern Press", "Redleaf", "Bluejay", "Northstar"],
        return_bias: -0.02,
        subs: [
            SubCategory {
                slug: "fiction",
                leaves: [
                    leaf("thrillers", "Thriller", 13.0, &["Gripping", "Bestselling", "Psychological", "Nordic"], &["thriller", "crime novel", "mystery"]),
                    leaf("fantasy", "Fantasy Novel", 15.0, &["Epic", "Illustrated", "Bestselling"], &["fantasy novel", "fantasy", "fantasy book"]),
                    leaf("romance", "Romance Novel", 11.0, &["Heartwarming", "Historical", "Bestselling"], &["romance novel", "romance"]),
                ],
            },
            SubCategory {
                slug: "nonfiction",
                leaves: [
                    leaf("cookbooks", "Cookbook", 26.0, &["Vegetarian", "Italian", "Quick", "Baking"], &["cookbook", "recipes", "baking book"]),
                    leaf("biographies", "Biography", 21.0, &["Illustrated", "Award-Winning", "Inspiring"], &["biography", "memoir"]),
                    leaf("history", "History Book", 24.0, &["Illustrated", "Ancient", "Modern"], &["history book", "history"]),
                ],
            },
            SubCategory {
                slug: "children",
                leaves: [
                    leaf("picture-books", "Picture Book", 11.0, &["Bedtime", "Illustrated", "Interactive"], &["picture book", "kids book", "childrens book"]),
                    leaf("activity-books", "Activity Book", 8.0, &["Sticker", "Colouring", "Puzzle"], &["activity book", "coloring book", "sticker book"]),
                    leaf("early-readers", "Early Reader", 7.0, &["Phonics", "Level 1", "Illustrated"], &["early reader", "learn to read"]),
                ],
            },
        ],
    },
    TopCategory {
        slug: "pets",
        brands: ["Pawsome", "Furbelle", "Tailwind", "Whiskerly", "Barkley", "Aquanest"],
        return_bias: -0.01,
        subs: [
            SubCategory {
                slug: "dogs",
                leaves: [
                    leaf("dog-food", "Dog Food", 39.0, &["Grain-Free", "Adult", "Puppy", "Salmon"], &["dog food", "puppy food", "kibble"]),
                    leaf("dog-beds", "Dog Bed", 49.0, &["Orthopedic", "Washable", "Calming", "Large"], &["dog bed", "pet bed"]),
                    leaf("leashes", "Dog Leash", 17.0, &["Retractable", "Reflective", "Leather"], &["dog leash", "leash", "dog lead"]),
                ],
            },
            SubCategory {
                slug: "cats",
                leaves: [
                    leaf("cat-litter", "Cat Litter", 14.0, &["Clumping", "Odor-Control", "Natural"], &["cat litter", "litter"]),
                    leaf("scratching-posts", "Scratching Post", 35.0, &["Sisal", "Tall", "Cat-Tree"], &["scratching post", "cat tree"]),
                    leaf("cat-toys", "Cat Toy", 8.0, &["Interactive", "Feather", "Catnip"], &["cat toy", "cat toys"]),
                ],
            },
            SubCategory {
                slug: "aquarium",
                leaves: [
                    leaf("fish-tanks", "Aquarium", 89.0, &["Nano", "60-Litre", "LED", "Starter"], &["aquarium", "fish tank"]),
                    leaf("filters", "Aquarium Filter", 29.0, &["Silent", "Internal", "Canister"], &["aquarium filter", "fish tank filter"]),
                    leaf("fish-food", "Fish Food", 7.0, &["Tropical", "Flakes", "Pellets"], &["fish food"]),
                ],
            },
        ],
    },
];

/// Model or edition suffixes that make otherwise identical titles distinct.
pub(crate) const TITLE_SUFFIXES: &[&str] = &[
    "Pro", "Lite", "Max", "Plus", "Mini", "Air", "X", "II", "3", "S",
];

pub(crate) const COLORS: &[&str] = &[
    "black", "white", "grey", "navy", "red", "green", "beige", "blue", "silver",
];

/// Attribute keys and value sets per top-level category, in the order they are drawn.
pub(crate) fn attribute_choices(
    top: &str,
    sub: &str,
) -> Vec<(&'static str, &'static [&'static str])> {
    match (top, sub) {
        ("electronics", _) => vec![
            ("color", &["black", "white", "silver", "graphite", "blue"]),
            ("warranty", &["1 year", "2 years", "3 years"]),
        ],
        ("fashion", "shoes") => vec![
            ("color", COLORS),
            (
                "size",
                &["37", "38", "39", "40", "41", "42", "43", "44", "45"],
            ),
            ("material", &["leather", "suede", "canvas", "mesh"]),
        ],
        ("fashion", "clothing") => vec![
            ("color", COLORS),
            ("size", &["XS", "S", "M", "L", "XL", "XXL"]),
            (
                "material",
                &["cotton", "denim", "wool", "polyester", "linen"],
            ),
        ],
        ("fashion", _) => vec![
            ("color", COLORS),
            ("material", &["leather", "steel", "nylon", "acetate"]),
        ],
        ("home", _) => vec![
            ("color", COLORS),
            ("material", &["wood", "steel", "ceramic", "glass", "cotton"]),
        ],
        ("beauty", _) => vec![
            ("volume", &["15 ml", "30 ml", "50 ml", "100 ml", "250 ml"]),
            ("skin_type", &["all", "dry", "oily", "sensitive"]),
        ],
        ("sports", _) => vec![("color", COLORS), ("size", &["S", "M", "L", "one size"])],
        ("toys", _) => vec![("color", COLORS), ("age", &["3+", "6+", "8+", "12+"])],
        ("books", _) => vec![
            ("format", &["paperback", "hardcover", "ebook"]),
            ("language", &["en", "de", "fr", "es", "it"]),
        ],
        _ => vec![("size", &["small", "medium", "large"])],
    }
}
