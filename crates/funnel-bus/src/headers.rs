//! Kafka headers with a meaning: dead-letter context and W3C trace context.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Header naming the wire form of a raw event.
pub const CONTENT_TYPE: &str = "content-type";
/// DLQ header: the stable error code, e.g. `missing_field`.
pub const DLQ_ERROR_CODE: &str = "funnel-error-code";
/// DLQ header: a reason a person can act on.
pub const DLQ_ERROR_REASON: &str = "funnel-error-reason";
/// DLQ headers: where the rejected message came from.
pub const DLQ_SOURCE_TOPIC: &str = "funnel-source-topic";
pub const DLQ_SOURCE_PARTITION: &str = "funnel-source-partition";
pub const DLQ_SOURCE_OFFSET: &str = "funnel-source-offset";
/// DLQ header: which service rejected it.
pub const DLQ_REJECTED_BY: &str = "funnel-rejected-by";

/// The value of header `name`, if present.
pub fn get<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a [u8]> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Where a rejected message came from and why.
pub struct DeadLetter<'a> {
    pub code: &'a str,
    pub reason: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub rejected_by: &'a str,
}

/// The original headers (trace context, content type) plus the DLQ headers.
pub fn dead_letter_headers<H: Headers>(original: Option<&H>, dl: &DeadLetter<'_>) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(h) = original {
        for header in h.iter() {
            if !header.key.starts_with("funnel-") {
                out = out.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    let partition = dl.partition.to_string();
    let offset = dl.offset.to_string();
    for (key, value) in [
        (DLQ_ERROR_CODE, dl.code),
        (DLQ_ERROR_REASON, dl.reason),
        (DLQ_SOURCE_TOPIC, dl.topic),
        (DLQ_SOURCE_PARTITION, partition.as_str()),
        (DLQ_SOURCE_OFFSET, offset.as_str()),
        (DLQ_REJECTED_BY, dl.rejected_by),
    ] {
        out = out.insert(Header {
            key,
            value: Some(value),
        });
    }
    out
}

/// Reads `traceparent`/`tracestate` from Kafka headers.
pub struct HeaderExtractor<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for HeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Collects propagation fields to write as Kafka headers.
#[derive(Default, Debug)]
pub struct HeaderInjector(pub Vec<(String, String)>);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The trace context carried by a message's headers (empty if none).
pub fn extract_context<H: Headers>(headers: Option<&H>) -> opentelemetry::Context {
    match headers {
        Some(h) => {
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)))
        }
        None => opentelemetry::Context::new(),
    }
}

/// Headers carrying `cx` (nothing when `cx` has no valid span).
pub fn inject_context(cx: &opentelemetry::Context) -> Vec<(String, String)> {
    let mut injector = HeaderInjector::default();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut injector));
    injector.0
}

/// Copies `traceparent`/`tracestate` unchanged from one message to the next
/// hop when no span of ours is recorded (no exporter, or not sampled).
pub fn trace_headers<H: Headers>(headers: Option<&H>) -> Vec<(String, String)> {
    let Some(h) = headers else {
        return Vec::new();
    };
    h.iter()
        .filter(|x| x.key == "traceparent" || x.key == "tracestate")
        .filter_map(|x| {
            let v = std::str::from_utf8(x.value?).ok()?;
            Some((x.key.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_headers_keep_the_original_and_name_the_error() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: "funnel-error-code",
                value: Some("stale"),
            });
        let h = dead_letter_headers(
            Some(&original),
            &DeadLetter {
                code: "missing_field",
                reason: "missing required field `event_id`",
                topic: "funnel.events.raw",
                partition: 3,
                offset: 42,
                rejected_by: "ingest",
            },
        );
        assert_eq!(get(Some(&h), DLQ_ERROR_CODE), Some(&b"missing_field"[..]));
        assert_eq!(get(Some(&h), DLQ_SOURCE_PARTITION), Some(&b"3"[..]));
        assert_eq!(get(Some(&h), DLQ_SOURCE_OFFSET), Some(&b"42"[..]));
        assert_eq!(
            get(Some(&h), "traceparent"),
            Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])
        );
        assert_eq!(
            h.iter().filter(|x| x.key == DLQ_ERROR_CODE).count(),
            1,
            "a stale error header from the input is replaced, not repeated"
        );
    }

    #[test]
    fn trace_headers_are_copied_for_the_next_hop() {
        let h = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        assert_eq!(
            trace_headers(Some(&h)),
            vec![(
                "traceparent".to_string(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()
            )]
        );
    }
}
