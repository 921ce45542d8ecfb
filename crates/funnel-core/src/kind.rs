//! Event type names and partitioning keys.

use crate::pb::{EventType, event::Payload};

/// Every event type of the contract, in the order of [`EventType`].
pub const EVENT_TYPES: [EventType; 10] = [
    EventType::Search,
    EventType::Impression,
    EventType::Click,
    EventType::AddToCart,
    EventType::RemoveFromCart,
    EventType::Order,
    EventType::Review,
    EventType::Return,
    EventType::Ticket,
    EventType::Item,
];

/// The contract's name of an event type (`add_to_cart`, ...).
pub fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Unspecified => "unspecified",
        EventType::Search => "search",
        EventType::Impression => "impression",
        EventType::Click => "click",
        EventType::AddToCart => "add_to_cart",
        EventType::RemoveFromCart => "remove_from_cart",
        EventType::Order => "order",
        EventType::Review => "review",
        EventType::Return => "return",
        EventType::Ticket => "ticket",
        EventType::Item => "item",
    }
}

/// The event type for a contract name, if it is one.
pub fn type_from_name(name: &str) -> Option<EventType> {
    EVENT_TYPES.into_iter().find(|t| type_name(*t) == name)
}

/// The Kafka key of a canonical event: `user_id`, so each user's events stay
/// ordered; `item_id` for catalog events.
pub fn event_key(event: &crate::pb::Event) -> &str {
    match &event.payload {
        Some(Payload::Item(item)) => &item.item_id,
        _ => &event.user_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_name_round_trips() {
        for t in EVENT_TYPES {
            assert_eq!(type_from_name(type_name(t)), Some(t));
        }
        assert_eq!(type_from_name("purchase"), None);
    }
}
