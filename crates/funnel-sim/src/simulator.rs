//! The event loop: an agenda of timed work (shoppers arriving, session steps, after-sales
//! events, catalog changes) processed in time order, so output comes out sorted by time while
//! only the sessions in progress are held in memory.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use crate::catalog::{Catalog, CatalogItem};
use crate::config::{ConfigError, SimConfig};
use crate::event::{Encoder, Event};
use crate::faults::FaultInjector;
use crate::ids;
use crate::record::{RecordKind, SessionTruth, SimRecord};
use crate::sampling::{Stream, exponential, rng_for, unit};
use crate::session::{Session, Step};
use crate::shop::{Later, Outbox, Shop};
use crate::users::UserProfile;

/// Two consecutive sessions of a shopper are at least this far apart, more than the
/// 30 minutes of inactivity after which ingest starts a new session.
const MIN_SESSION_GAP_MS: f64 = 45.0 * 60_000.0;
/// Relative traffic per hour of day (UTC): quiet at night, peaking in the evening.
const HOURLY_TRAFFIC: [f64; 24] = [
    0.35, 0.25, 0.18, 0.15, 0.15, 0.2, 0.3, 0.45, 0.6, 0.7, 0.75, 0.8, 0.85, 0.82, 0.8, 0.8, 0.82,
    0.85, 0.9, 0.97, 1.0, 0.95, 0.8, 0.55,
];

/// A deterministic stream of raw platform events; see the crate docs.
pub struct Simulator {
    config: SimConfig,
    shop: Shop,
    encoder: Encoder,
    agenda: BinaryHeap<Reverse<Scheduled>>,
    scheduled: u64,
    /// Catalog items announced so far; all are announced, at `start_ms`, before any traffic.
    catalog_announced: usize,
    ready: VecDeque<Ready>,
    truths: Vec<SessionTruth>,
    faults: Option<FaultInjector>,
    events_published: u64,
    sessions_started: u64,
    sessions_in_progress: usize,
    aftersales_pending: usize,
    exhausted: bool,
}

enum Ready {
    Record(SimRecord),
    /// Released to `take_finished_truths` only once the session's records have been yielded.
    Truth(SessionTruth),
}

enum Task {
    Arrival(u32),
    Session(Box<Session>),
    Aftersales(Box<Event>),
    CatalogUpdate,
    Restock(u32),
}

/// Agenda entry, ordered by time and then by scheduling order, which makes ties deterministic.
struct Scheduled {
    at_ms: i64,
    order: u64,
    task: Task,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_ms, self.order).cmp(&(other.at_ms, other.order))
    }
}

impl Simulator {
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let run = ids::run_tag(config.seed, config.start_ms);
        let catalog = Catalog::generate(config.items, &mut rng_for(config.seed, Stream::Catalog));
        let mut users_rng = rng_for(config.seed, Stream::Users);
        let users = (0..config.users as u32)
            .map(|index| UserProfile::generate(index, &catalog, &mut users_rng))
            .collect();
        let shop = Shop::new(
            catalog,
            users,
            rng_for(config.seed, Stream::Traffic),
            config.mean_aftersales_delay_ms as f64,
        );
        let injects_faults = config.invalid_rate > 0.0 || config.duplicate_rate > 0.0;
        let faults = injects_faults.then(|| {
            FaultInjector::new(
                rng_for(config.seed, Stream::Faults),
                config.invalid_rate,
                config.duplicate_rate,
                run.clone(),
                config.currency.clone(),
                config.rfc3339_timestamps,
            )
        });
        let encoder = Encoder {
            run,
            currency: config.currency.clone(),
            omit_session_ids: config.omit_session_ids,
            rfc3339_timestamps: config.rfc3339_timestamps,
        };
        let mut simulator = Self {
            config,
            shop,
            encoder,
            agenda: BinaryHeap::new(),
            scheduled: 0,
            catalog_announced: 0,
            ready: VecDeque::new(),
            truths: Vec::new(),
            faults,
            events_published: 0,
            sessions_started: 0,
            sessions_in_progress: 0,
            aftersales_pending: 0,
            exhausted: false,
        };
        let start = simulator.config.start_ms;
        for user in 0..simulator.config.users as u32 {
            let first_visit = simulator.next_visit(user, start, 0.0);
            simulator.schedule(first_visit, Task::Arrival(user));
        }
        let first_update = start + simulator.catalog_update_gap();
        simulator.schedule(first_update, Task::CatalogUpdate);
        Ok(simulator)
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The catalog as it is now (prices and stock change as the simulation runs).
    pub fn catalog(&self) -> &[CatalogItem] {
        &self.shop.catalog.items
    }

    /// The shoppers and their latent preferences.
    pub fn users(&self) -> &[UserProfile] {
        &self.shop.users
    }

    /// Truths of the sessions whose events have all been yielded since the last call. Once
    /// the iterator has returned `None`, every session's truth has been handed out.
    pub fn take_finished_truths(&mut self) -> Vec<SessionTruth> {
        std::mem::take(&mut self.truths)
    }

    fn schedule(&mut self, at_ms: i64, task: Task) {
        self.scheduled += 1;
        self.agenda.push(Reverse(Scheduled {
            at_ms,
            order: self.scheduled,
            task,
        }));
    }

    fn next_valid(&mut self) -> Option<SimRecord> {
        loop {
            match self.ready.pop_front() {
                Some(Ready::Record(record)) => return Some(record),
                Some(Ready::Truth(truth)) => {
                    if self.config.collect_truths {
                        self.truths.push(truth);
                    }
                }
                None => {
                    if !self.advance() {
                        return None;
                    }
                }
            }
        }
    }

    /// Does the next piece of work; false when the run is over.
    fn advance(&mut self) -> bool {
        if self.catalog_announced < self.shop.catalog.items.len() {
            let item = self.catalog_announced as u32;
            self.catalog_announced += 1;
            let event = Event::catalog_upsert(self.config.start_ms, &self.shop.catalog, item);
            self.publish(&event);
            return true;
        }
        let all_started = self
            .config
            .sessions
            .is_some_and(|limit| self.sessions_started >= limit);
        if all_started && self.sessions_in_progress == 0 && self.aftersales_pending == 0 {
            return false;
        }
        let Some(Reverse(Scheduled {
            at_ms: now, task, ..
        })) = self.agenda.pop()
        else {
            return false;
        };
        match task {
            Task::Arrival(user) => {
                if !all_started {
                    self.sessions_started += 1;
                    self.sessions_in_progress += 1;
                    let session = Session::begin(user, now, &mut self.shop);
                    self.schedule(now, Task::Session(Box::new(session)));
                }
            }
            Task::Session(mut session) => {
                let mut outbox = Outbox::default();
                let step = session.step(now, &mut self.shop, &mut outbox);
                self.deliver(outbox);
                match step {
                    Step::After(pause_ms) => self.schedule(now + pause_ms, Task::Session(session)),
                    Step::Done => self.close(&session),
                }
            }
            Task::Aftersales(event) => {
                self.aftersales_pending -= 1;
                self.publish(&event);
            }
            Task::CatalogUpdate => {
                let item = self.shop.catalog.routine_update(&mut self.shop.rng);
                self.publish(&Event::catalog_upsert(now, &self.shop.catalog, item));
                let next_update = now + self.catalog_update_gap();
                self.schedule(next_update, Task::CatalogUpdate);
            }
            Task::Restock(item) => {
                self.shop.catalog.restock(item, &mut self.shop.rng);
                self.publish(&Event::catalog_upsert(now, &self.shop.catalog, item));
            }
        }
        true
    }

    fn deliver(&mut self, outbox: Outbox) {
        for event in &outbox.events {
            self.publish(event);
        }
        for (at_ms, later) in outbox.later {
            let task = match later {
                Later::Aftersales(event) => {
                    self.aftersales_pending += 1;
                    Task::Aftersales(Box::new(event))
                }
                Later::Restock(item) => Task::Restock(item),
            };
            self.schedule(at_ms, task);
        }
    }

    fn publish(&mut self, event: &Event) {
        self.events_published += 1;
        let (key, payload) = self
            .encoder
            .encode(event, self.events_published, &self.shop.catalog);
        self.ready.push_back(Ready::Record(SimRecord {
            key,
            payload,
            ts_ms: event.ts_ms,
            kind: RecordKind::Valid,
        }));
    }

    fn close(&mut self, session: &Session) {
        self.sessions_in_progress -= 1;
        let run = &self.encoder.run;
        self.ready.push_back(Ready::Truth(SessionTruth {
            session_id: ids::session(run, session.number),
            user_id: ids::user(session.user),
            start_ms: session.start_ms,
            end_ms: session.last_event_ms,
            purchase_probability: session.purchase_probability,
            ordered: session.ordered(),
            order_id: session.order.map(|order| ids::order(run, order)),
            cart_abandoned: session.cart_abandoned(),
            kind: session.kind,
            events: session.events,
        }));
        let still_starting = self
            .config
            .sessions
            .is_none_or(|limit| self.sessions_started < limit);
        if still_starting {
            let next_visit =
                self.next_visit(session.user, session.last_event_ms, MIN_SESSION_GAP_MS);
            self.schedule(next_visit, Task::Arrival(session.user));
        }
    }

    /// When a shopper next shows up: a Poisson process whose rate follows the time of day
    /// (thinning: draw at the peak rate, keep a candidate with the hour's relative traffic),
    /// scaled so the mean gap is `mean_session_gap_ms / activity`.
    fn next_visit(&mut self, user: u32, after_ms: i64, min_gap_ms: f64) -> i64 {
        let mean_hourly = HOURLY_TRAFFIC.iter().sum::<f64>() / 24.0;
        let activity = self.shop.users[user as usize].activity.max(0.05);
        let mean_gap = self.config.mean_session_gap_ms as f64 / activity * mean_hourly;
        let mut at = after_ms as f64 + min_gap_ms;
        loop {
            at += exponential(&mut self.shop.rng, mean_gap);
            let hour = (at as i64 / 3_600_000).rem_euclid(24) as usize;
            if unit(&mut self.shop.rng) < HOURLY_TRAFFIC[hour] {
                return at as i64;
            }
        }
    }

    fn catalog_update_gap(&mut self) -> i64 {
        exponential(
            &mut self.shop.rng,
            self.config.mean_catalog_update_gap_ms as f64,
        )
        .max(1.0) as i64
    }
}

impl Iterator for Simulator {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        if self.exhausted {
            return None;
        }
        if let Some(fault) = self.faults.as_mut().and_then(FaultInjector::inject) {
            return Some(fault);
        }
        let Some(record) = self.next_valid() else {
            self.exhausted = true;
            return None;
        };
        if let Some(faults) = &mut self.faults {
            faults.remember(&record);
        }
        Some(record)
    }
}
