//! `bluegreen status --watch`: the live view on call leaves open during a release.
//!
//! Every `interval` it reads what `status` reads (the regions from AWS, the lock, the journal's
//! latest record; nothing is written) and shows one line for the deployment and one per region:
//! production weights, each colour's version and healthy targets, the region's phase and the
//! gate's last verdict (journaled by the promote when a step's bake passes). On a terminal the
//! lines are redrawn in place; otherwise a line is printed when it changes, with the time.
//!
//! It follows the deployment running when it starts, or else the next one to start, and ends
//! when that one does, with its outcome's exit code. Ctrl-C stops it (exit 130); it changes
//! nothing either way.
//!
//! Data flows one way: `status_with` → [`frame`] (pure: the lines) → [`Screen::show`] (what to
//! print); [`follow`] (pure) decides after each look whether to go on.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::status::{RegionStatus, Releases, Status, status_with};
use super::{Env, Error};
use crate::aws::elb::Colour;
use crate::aws::journal::{Outcome, Record, RegionPhase, RegionRecord};

/// How to watch.
#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    /// Redraw in place (stdout is a terminal) or print changed lines.
    pub terminal: bool,
    /// Terminal columns and rows, read again at every look: redrawn lines are cut to fit, so
    /// none wraps, and a frame taller than the terminal is cut too.
    pub width: usize,
    pub rows: usize,
    /// Newline-delimited JSON: one `watch` object per look that changed something.
    pub json: bool,
}

/// Which deployment the watch follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Following {
    /// Before the first look.
    Start,
    /// None ran at the first look (whose latest record this is, ended): the next to start.
    Next(Option<String>),
    Id(String),
}

/// What a look decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Watch(Following),
    End(Outcome),
}

/// After a look: `latest` is the journal's newest record, `ours` the followed one's record as
/// read now (the same record unless a newer deployment started since). A deployment that
/// started and ended between two looks still ends the watch: its record is newer than the one
/// the watch began with.
pub fn follow(f: &Following, latest: Option<&Record>, ours: Option<&Record>) -> Then {
    let latest_id = latest.map(|r| r.id.clone());
    match (f, latest.map(|r| r.outcome)) {
        (Following::Start | Following::Next(_), Some(None)) => {
            Then::Watch(Following::Id(latest_id.unwrap_or_default()))
        }
        (Following::Start, _) => Then::Watch(Following::Next(latest_id)),
        (Following::Next(before), Some(Some(o))) if latest_id != *before => Then::End(o),
        (Following::Next(_), _) => Then::Watch(f.clone()),
        (Following::Id(_), _) => match ours.and_then(|r| r.outcome) {
            Some(o) => Then::End(o),
            None => Then::Watch(f.clone()),
        },
    }
}

/// The record a look shows: the followed deployment's, once there is one.
fn shown(
    f: &Following,
    then: &Then,
    latest: Option<&Record>,
    ours: Option<Record>,
) -> Option<Record> {
    match (f, then) {
        (Following::Id(_), _) => ours,
        (_, Then::Watch(Following::Id(_)) | Then::End(_)) => latest.cloned(),
        _ => None,
    }
}

/// The lines of one look: (key, text), the deployment first, then each region.
pub fn frame(s: &Status, record: Option<&Record>) -> Vec<(String, String)> {
    let mut lines = vec![(s.env.clone(), headline(s, record))];
    for r in &s.regions {
        let rec = record.and_then(|d| d.regions.get(&r.region));
        lines.push((r.region.clone(), region_line(r, rec)));
    }
    lines
}

fn headline(s: &Status, record: Option<&Record>) -> String {
    let lock = match &s.lock {
        Some(h) => format!("lock held by {}", h.deployment),
        None => "lock free".to_owned(),
    };
    let deployment = match record {
        Some(r) => {
            let state = r
                .outcome
                .map_or_else(|| r.phase.to_string(), |o| o.to_string());
            let why = r
                .message
                .as_deref()
                .map_or(String::new(), |m| format!(": {m}"));
            format!("{} {} ({}) {state}{why}", r.kind, r.version, r.id)
        }
        _ => "no deployment running; watching for the next".to_owned(),
    };
    let next = s
        .next
        .as_deref()
        .map_or(String::new(), |n| format!("; next: {n}"));
    format!("{deployment}; {lock}{next}")
}

/// `blue 90% v1.2.0 2/2 healthy | green 10% v1.2.1 2/2 healthy | shifting 10% | gate: 10% passed:
/// …` (the region is the line's key)
fn region_line(r: &RegionStatus, rec: Option<&RegionRecord>) -> String {
    if let Some(e) = &r.error {
        return format!("error: {e}");
    }
    let mut parts: Vec<String> = [Colour::Blue, Colour::Green]
        .into_iter()
        .map(|c| colour_part(r, c))
        .collect();
    if let Some(rec) = rec {
        parts.push(match rec.phase {
            RegionPhase::Shifting => format!("shifting {}%", rec.weight),
            phase => phase.to_string(),
        });
        if let Some(g) = &rec.gate {
            parts.push(format!("gate: {g}"));
        }
    }
    parts.join(" | ")
}

fn colour_part(r: &RegionStatus, c: Colour) -> String {
    let weight = r.weights.map_or("?".to_owned(), |w| match c {
        Colour::Blue => w.blue.to_string(),
        Colour::Green => w.green.to_string(),
    });
    let version = r
        .task_sets
        .iter()
        .find(|t| t.colour == Some(c))
        .map_or("no task set".to_owned(), |t| {
            t.version.clone().unwrap_or_else(|| "?".to_owned())
        });
    let health = r
        .health
        .get(c.as_str())
        .filter(|h| h.registered() > 0)
        .map_or(String::new(), |h| {
            format!(" {}/{} healthy", h.healthy, h.registered())
        });
    format!("{c} {weight}% {version}{health}")
}

/// What has been shown, to redraw it or print only what changed.
#[derive(Default)]
pub struct Screen {
    last: Vec<(String, String)>,
    /// Lines drawn by the last redraw (a terminal), to move back over.
    drawn: usize,
}

impl Screen {
    fn changed<'l>(&self, lines: &'l [(String, String)]) -> Vec<&'l (String, String)> {
        let shown: BTreeMap<&String, &String> = self.last.iter().map(|(k, v)| (k, v)).collect();
        lines
            .iter()
            .filter(|(k, v)| shown.get(k) != Some(&v))
            .collect()
    }

    /// The last frame with its first line (the deployment's) replaced: a look that failed.
    fn with_headline(&self, key: &str, text: String) -> Vec<(String, String)> {
        let mut lines = self.last.clone();
        match lines.first_mut() {
            Some(first) => *first = (key.to_owned(), text),
            None => lines.push((key.to_owned(), text)),
        }
        lines
    }

    /// The text to write for `lines`: the whole frame, redrawn over the last one, on a terminal;
    /// otherwise each changed line with the time. Empty when nothing changed.
    pub fn show(&mut self, lines: &[(String, String)], o: &Options, now: SystemTime) -> String {
        let changed = self.changed(lines);
        if changed.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        if o.terminal {
            if self.drawn > 0 {
                // Back to the first line of the last frame; each line is cleared as it is drawn.
                out.push_str(&format!("\x1b[{}A", self.drawn));
            }
            let keys = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let fit = fit_rows(lines, o.rows);
            for (k, v) in &fit {
                let line = format!("{:>keys$}: {}", k, v.replace('\n', " "));
                let cut: String = line
                    .chars()
                    .take(o.width.saturating_sub(1).max(20))
                    .collect();
                out.push_str(&format!("\r\x1b[2K{cut}\n"));
            }
            out.push_str("\x1b[J");
            self.drawn = fit.len();
        } else {
            let stamp = crate::report::clock(now);
            for (k, v) in changed {
                out.push_str(&format!("{stamp} [{k}] {v}\n"));
            }
        }
        self.last = lines.to_vec();
        out
    }
}

/// A followed deployment that was promoted.
#[derive(Debug, serde::Serialize)]
pub struct Watched {
    pub env: String,
    pub deployment: String,
    pub version: String,
    pub outcome: Outcome,
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "deployment {} of {} {} in {}",
            self.deployment, self.version, self.outcome, self.env
        )
    }
}

/// Looks that fail in a row before the watch gives up (exit 1): expired credentials or a
/// missing permission never come right by waiting.
const FAILED_LOOKS: u32 = 5;

/// The frame cut to a terminal's rows (one kept free for the cursor), saying what it left out.
fn fit_rows(lines: &[(String, String)], rows: usize) -> Vec<(String, String)> {
    let room = rows.saturating_sub(1).max(2);
    if lines.len() <= room {
        return lines.to_vec();
    }
    let mut fit = lines[..room - 1].to_vec();
    fit.push((
        "…".to_owned(),
        format!(
            "{} more regions: a taller terminal shows them, or a pipe (a line per change)",
            lines.len() - (room - 1)
        ),
    ));
    fit
}

/// Watches until the followed deployment ends (its outcome's exit code) or `cancel`.
pub async fn watch(env: &Env, o: &Options, cancel: CancellationToken) -> Result<Watched, Error> {
    let releases = Releases::default();
    let mut screen = Screen::default();
    let mut following = Following::Start;
    let mut failed = 0;
    loop {
        let look = tokio::select! {
            s = status_with(env, &releases) => s,
            () = cancel.cancelled() => return Err(stopped()),
        };
        let o = &o.resized();
        match look {
            Ok(s) => {
                failed = 0;
                let ours = ours(env, &following, s.latest.as_ref()).await;
                let then = follow(&following, s.latest.as_ref(), ours.as_ref());
                let record = shown(&following, &then, s.latest.as_ref(), ours);
                print(&mut screen, o, &s, record.as_ref());
                match then {
                    Then::End(outcome) => return ended(&env.plan.env, outcome, record.as_ref()),
                    Then::Watch(next) => following = next,
                }
            }
            Err(e) => {
                failed += 1;
                if failed == FAILED_LOOKS {
                    return Err(Error::Failed(format!(
                        "stopped watching: {FAILED_LOOKS} looks in a row failed; the last: {e}"
                    )));
                }
                look_failed(&mut screen, o, &env.plan.env, &e);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(o.interval) => {}
            () = cancel.cancelled() => return Err(stopped()),
        }
    }
}

/// A look that failed (throttled, the network, the journal): shown in place of the deployment's
/// line (once, in JSON, while it repeats), and tried again at the next look.
fn look_failed(screen: &mut Screen, o: &Options, env: &str, e: &Error) {
    let text = format!("cannot read the status now ({e}); trying again");
    let lines = screen.with_headline(env, text);
    if !o.json {
        write_out(&screen.show(&lines, o, SystemTime::now()));
    } else if !screen.changed(&lines).is_empty() {
        screen.last = lines;
        let event =
            serde_json::json!({"type": "watch", "ts": now_rfc3339(), "error": e.to_string()});
        write_out(&format!("{event}\n"));
    }
}

/// The followed deployment's record as it is now: the latest, unless a newer one started
/// between two looks (then read from history).
async fn ours(env: &Env, f: &Following, latest: Option<&Record>) -> Option<Record> {
    let Following::Id(id) = f else {
        return None;
    };
    if let Some(r) = latest.filter(|r| &r.id == id) {
        return Some(r.clone());
    }
    let recent = env.journal.history(20).await.ok()?;
    recent.into_iter().find(|r| &r.id == id)
}

fn print(screen: &mut Screen, o: &Options, s: &Status, record: Option<&Record>) {
    if o.json {
        let lines = frame(s, record);
        if screen.changed(&lines).is_empty() {
            return;
        }
        screen.last = lines;
        let event = serde_json::json!({
            "type": "watch",
            "ts": now_rfc3339(),
            "status": s,
            "deployment": record,
        });
        write_out(&format!("{event}\n"));
        return;
    }
    write_out(&screen.show(&frame(s, record), o, SystemTime::now()));
}

impl Options {
    /// These options with the terminal's size as it is now.
    fn resized(&self) -> Options {
        let mut o = self.clone();
        if o.terminal {
            (o.rows, o.width) = terminal_size();
        }
        o
    }
}

/// The terminal's rows and columns (24 × 80 when stdout is not one or cannot say).
pub fn terminal_size() -> (usize, usize) {
    let (rows, cols) = console::Term::stdout().size_checked().unwrap_or((24, 80));
    (usize::from(rows), usize::from(cols))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn write_out(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn stopped() -> Error {
    Error::Interrupted("stopped watching; nothing was changed".into())
}

/// The followed deployment ended: its outcome as the exit code (0, 3, or 1).
fn ended(env: &str, outcome: Outcome, record: Option<&Record>) -> Result<Watched, Error> {
    let (id, version, message) = record.map_or(("?", "?", None), |r| {
        (r.id.as_str(), r.version.as_str(), r.message.as_deref())
    });
    let why = message.map_or(String::new(), |m| format!(": {m}"));
    let what = format!("deployment {id} of {version} {outcome}{why}");
    match outcome {
        Outcome::Promoted => Ok(Watched {
            env: env.to_owned(),
            deployment: id.to_owned(),
            version: version.to_owned(),
            outcome,
        }),
        Outcome::RolledBack => Err(Error::RolledBack(what)),
        Outcome::RollbackFailed => Err(Error::Unsettled(what)),
        Outcome::Failed => Err(Error::Failed(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, outcome: Option<Outcome>) -> Record {
        Record {
            id: id.into(),
            outcome,
            ..Record::default()
        }
    }

    #[test]
    fn the_watch_follows_one_deployment_to_its_end() {
        let (a, a_done) = (record("a", None), record("a", Some(Outcome::RolledBack)));
        let (b, b_done) = (record("b", None), record("b", Some(Outcome::Promoted)));
        let id = |s: &str| Following::Id(s.into());
        let after = |s: &str| Following::Next(Some(s.into()));
        #[rustfmt::skip]
        let cases: Vec<(Following, Option<&Record>, Option<&Record>, Then)> = vec![
            // The first look: follow what runs, or wait for the next.
            (Following::Start, None, None, Then::Watch(Following::Next(None))),
            (Following::Start, Some(&a_done), None, Then::Watch(after("a"))),
            (Following::Start, Some(&a), None, Then::Watch(id("a"))),
            // Waiting: nothing new yet; one started; one started and ended between two looks.
            (after("a"), Some(&a_done), None, Then::Watch(after("a"))),
            (Following::Next(None), None, None, Then::Watch(Following::Next(None))),
            (after("a"), Some(&b), None, Then::Watch(id("b"))),
            (after("a"), Some(&b_done), None, Then::End(Outcome::Promoted)),
            (Following::Next(None), Some(&b_done), None, Then::End(Outcome::Promoted)),
            // Following: it runs on; it ended, so does the watch, with its outcome.
            (id("a"), Some(&a), Some(&a), Then::Watch(id("a"))),
            (id("a"), Some(&a_done), Some(&a_done), Then::End(Outcome::RolledBack)),
            // It ended and another started between two looks: ours decides.
            (id("a"), Some(&b), Some(&a_done), Then::End(Outcome::RolledBack)),
            // Its record cannot be read now: keep watching.
            (id("a"), Some(&b), None, Then::Watch(id("a"))),
        ];
        for (f, latest, ours, want) in cases {
            assert_eq!(follow(&f, latest, ours), want, "{f:?} {latest:?}");
        }
    }

    fn options(terminal: bool) -> Options {
        Options {
            interval: Duration::from_secs(1),
            terminal,
            width: 40,
            rows: 24,
            json: false,
        }
    }

    #[test]
    fn a_terminal_gets_the_frame_redrawn_and_a_log_gets_what_changed() {
        let one = vec![
            ("prod".to_owned(), "a".to_owned()),
            ("us-east-1".to_owned(), "x".repeat(60)),
        ];
        let two = vec![
            ("prod".to_owned(), "a".to_owned()),
            ("us-east-1".to_owned(), "y".to_owned()),
        ];
        let t = SystemTime::UNIX_EPOCH;

        let mut tty = Screen::default();
        let first = tty.show(&one, &options(true), t);
        assert!(
            !first.contains("\x1b[2A"),
            "nothing to move back over yet: {first:?}"
        );
        assert!(
            first.contains(&format!("\r\x1b[2Kus-east-1: {}\n", "x".repeat(28))),
            "cut to the width: {first:?}"
        );
        assert!(
            first.contains("\r\x1b[2K     prod: a\n"),
            "keys aligned: {first:?}"
        );
        assert_eq!(
            tty.show(&one, &options(true), t),
            "",
            "nothing changed, nothing drawn"
        );
        let second = tty.show(&two, &options(true), t);
        assert!(
            second.starts_with("\x1b[2A\r\x1b[2K     prod: a\n\r\x1b[2Kus-east-1: y\n"),
            "{second:?}"
        );

        // A frame taller than the terminal: cut, saying how many lines it left out.
        let tall: Vec<(String, String)> = (0..30).map(|i| (format!("r{i}"), "x".into())).collect();
        let cut = Screen::default().show(
            &tall,
            &Options {
                rows: 10,
                ..options(true)
            },
            t,
        );
        assert_eq!(cut.matches("\x1b[2K").count(), 9, "{cut:?}");
        assert!(cut.contains("…: 22 more regions"), "{cut:?}");

        let mut log = Screen::default();
        assert_eq!(log.show(&one, &options(false), t).lines().count(), 2);
        assert_eq!(
            log.show(&two, &options(false), t),
            "00:00:00Z [us-east-1] y\n"
        );
    }
}
