//! The rules that need a user's recent history: lateness, future skew and
//! session assignment. Pure functions over a small [`UserClock`] that the
//! caller loads from and saves to the feature store.

use xxhash_rust::xxh3::xxh3_64;

use crate::Millis;
use crate::reject::{RejectCode, Rejection};

/// Timing rules of ingest.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    /// Inactivity after which a user's next event starts a new session.
    pub session_gap_ms: Millis,
    /// How far behind the user's newest event an event may be.
    pub max_lateness_ms: Millis,
    /// How far ahead of the wall clock an event may be.
    pub max_future_skew_ms: Millis,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            session_gap_ms: 30 * 60 * 1000,
            max_lateness_ms: 24 * 3600 * 1000,
            max_future_skew_ms: 5 * 60 * 1000,
        }
    }
}

/// What ingest remembers of a user between events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserClock {
    /// Newest event time seen for the user (0: none yet).
    pub newest_ts_ms: Millis,
    /// Current session, as sent or as assigned.
    pub session_id: String,
    /// When the current session started.
    pub session_start_ms: Millis,
    /// Newest event time of the current session.
    pub session_last_ms: Millis,
}

/// The outcome of assigning an event to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAssignment {
    pub session_id: String,
    /// True when ingest made the id up (the event had none).
    pub assigned: bool,
    /// True when this event opened a new session.
    pub new_session: bool,
}

/// Whether an event's time is acceptable.
pub trait TimeCheck {
    fn check_time(&self, ts_ms: Millis, now_ms: Millis, clock: &UserClock)
    -> Result<(), Rejection>;
}

impl TimeCheck for SessionRules {
    fn check_time(
        &self,
        ts_ms: Millis,
        now_ms: Millis,
        clock: &UserClock,
    ) -> Result<(), Rejection> {
        if ts_ms > now_ms + self.max_future_skew_ms {
            return Err(Rejection::new(
                RejectCode::FutureEvent,
                format!(
                    "event time is {} s in the future, more than the allowed skew of {} s",
                    (ts_ms - now_ms) / 1000,
                    self.max_future_skew_ms / 1000
                ),
            ));
        }
        if clock.newest_ts_ms > 0 && clock.newest_ts_ms - ts_ms > self.max_lateness_ms {
            return Err(Rejection::new(
                RejectCode::LateEvent,
                format!(
                    "event is {} s older than the user's newest event, more than the allowed lateness of {} s",
                    (clock.newest_ts_ms - ts_ms) / 1000,
                    self.max_lateness_ms / 1000
                ),
            ));
        }
        Ok(())
    }
}

impl SessionRules {
    /// Assigns the event to a session and advances the clock. An explicit
    /// session id wins; otherwise a new session starts after `session_gap_ms`
    /// of inactivity. Late events (older than the session's newest) join the
    /// current session rather than opening one in the past.
    pub fn assign(
        &self,
        clock: &mut UserClock,
        user_id: &str,
        ts_ms: Millis,
        explicit: Option<&str>,
    ) -> SessionAssignment {
        let assignment = match explicit {
            Some(sid) => {
                let new_session = clock.session_id != sid;
                if new_session {
                    clock.session_id = sid.to_string();
                    clock.session_start_ms = ts_ms;
                    clock.session_last_ms = ts_ms;
                }
                SessionAssignment {
                    session_id: sid.to_string(),
                    assigned: false,
                    new_session,
                }
            }
            None => {
                let expired = clock.session_id.is_empty()
                    || ts_ms - clock.session_last_ms > self.session_gap_ms;
                if expired {
                    clock.session_id = session_id_for(user_id, ts_ms);
                    clock.session_start_ms = ts_ms;
                    clock.session_last_ms = ts_ms;
                }
                SessionAssignment {
                    session_id: clock.session_id.clone(),
                    assigned: true,
                    new_session: expired,
                }
            }
        };
        clock.session_last_ms = clock.session_last_ms.max(ts_ms);
        clock.newest_ts_ms = clock.newest_ts_ms.max(ts_ms);
        assignment
    }
}

/// A session id derived from the user and the session's first event time, so
/// a replay assigns the same id.
pub fn session_id_for(user_id: &str, start_ms: Millis) -> String {
    let mut buf = Vec::with_capacity(user_id.len() + 9);
    buf.extend_from_slice(user_id.as_bytes());
    buf.push(0);
    buf.extend_from_slice(&start_ms.to_be_bytes());
    format!("s{:016x}", xxh3_64(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60 * 1000;
    const T0: Millis = 1_764_000_000_000;

    #[test]
    fn events_within_the_gap_share_a_session_and_a_gap_opens_a_new_one() {
        let rules = SessionRules::default();
        let mut clock = UserClock::default();
        let a = rules.assign(&mut clock, "u1", T0, None);
        let b = rules.assign(&mut clock, "u1", T0 + 29 * MIN, None);
        let c = rules.assign(&mut clock, "u1", T0 + 29 * MIN + 31 * MIN, None);
        assert!(a.new_session && a.assigned);
        assert_eq!(b.session_id, a.session_id);
        assert!(!b.new_session);
        assert_ne!(c.session_id, a.session_id);
        assert!(c.new_session);
        assert_eq!(clock.session_start_ms, T0 + 60 * MIN);
        assert_eq!(c.session_id, session_id_for("u1", T0 + 60 * MIN));
    }

    #[test]
    fn a_late_event_joins_the_current_session() {
        let rules = SessionRules::default();
        let mut clock = UserClock::default();
        let a = rules.assign(&mut clock, "u1", T0, None);
        let late = rules.assign(&mut clock, "u1", T0 - 45 * MIN, None);
        assert_eq!(late.session_id, a.session_id);
        assert_eq!(clock.newest_ts_ms, T0);
        assert_eq!(clock.session_last_ms, T0);
    }

    #[test]
    fn an_explicit_session_id_is_kept() {
        let rules = SessionRules::default();
        let mut clock = UserClock::default();
        let a = rules.assign(&mut clock, "u1", T0, Some("web-1"));
        let b = rules.assign(&mut clock, "u1", T0 + 90 * MIN, Some("web-1"));
        assert_eq!(
            (a.session_id.as_str(), a.assigned, a.new_session),
            ("web-1", false, true)
        );
        assert_eq!((b.session_id.as_str(), b.new_session), ("web-1", false));
    }

    #[test]
    fn time_checks_reject_late_and_future_events_with_reasons() {
        let rules = SessionRules::default();
        let clock = UserClock {
            newest_ts_ms: T0,
            ..UserClock::default()
        };
        let late = rules
            .check_time(T0 - 25 * 60 * MIN, T0, &clock)
            .unwrap_err();
        assert_eq!(late.code, RejectCode::LateEvent);
        assert!(late.reason.contains("90000 s older"), "{}", late.reason);
        let future = rules.check_time(T0 + 6 * MIN, T0, &clock).unwrap_err();
        assert_eq!(future.code, RejectCode::FutureEvent);
        assert_eq!(rules.check_time(T0 - 23 * 60 * MIN, T0, &clock), Ok(()));
        assert_eq!(rules.check_time(T0 + 4 * MIN, T0, &clock), Ok(()));
        assert_eq!(
            rules.check_time(T0 - 400 * 60 * MIN, T0, &UserClock::default()),
            Ok(()),
            "a user with no history has nothing to be late against"
        );
    }
}
