//! The running deployment's journal record, shared by the regions running at once: every change
//! is written through (with `Journal::write`'s retries) before the phase it records is acted on
//! further, and a write that still fails is returned, never dropped.

use tokio::sync::Mutex;

use crate::aws::CallError;
use crate::aws::journal::{Journal, Record, RegionPhase, RegionRecord};

pub struct Tracker {
    journal: Journal,
    record: Mutex<Record>,
}

impl Tracker {
    pub fn new(journal: Journal, record: Record) -> Self {
        Self {
            journal,
            record: Mutex::new(record),
        }
    }

    pub async fn snapshot(&self) -> Record {
        self.record.lock().await.clone()
    }

    pub async fn region(&self, region: &str) -> RegionRecord {
        self.record
            .lock()
            .await
            .regions
            .get(region)
            .cloned()
            .unwrap_or_default()
    }

    /// Applies `f` to the record and writes it.
    pub async fn update(&self, f: impl FnOnce(&mut Record)) -> Result<(), CallError> {
        let mut r = self.record.lock().await;
        f(&mut r);
        self.journal.write(&r).await
    }

    pub async fn update_region(
        &self,
        region: &str,
        f: impl FnOnce(&mut RegionRecord),
    ) -> Result<(), CallError> {
        self.update(|r| f(r.regions.entry(region.to_owned()).or_default()))
            .await
    }

    /// Records that `region` reached `phase` (with `f`'s other changes), unless it is already
    /// there or past it (a resume re-running a phase): a promote phase never goes backwards.
    pub async fn advance(
        &self,
        region: &str,
        phase: RegionPhase,
        f: impl FnOnce(&mut RegionRecord),
    ) -> Result<(), CallError> {
        let mut r = self.record.lock().await;
        let x = r.regions.entry(region.to_owned()).or_default();
        if x.phase.reached(phase) {
            return Ok(());
        }
        x.phase = phase;
        f(x);
        self.journal.write(&r).await
    }
}
