//! Progress and results. Progress goes to stderr: indicatif bars (one per region) on a terminal,
//! one plain timestamped line per event otherwise, so CI logs never go silent. Results go to
//! stdout as text, or with `--output json` every event and the final result are JSON lines.
//! In GitHub Actions, failures become `::error::` annotations and the result a step summary.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    format: Format,
    quiet: bool,
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    github: bool,
    summary: Option<std::path::PathBuf>,
    /// Per region, each new analysis window: (its length in seconds, from the first exposure;
    /// the share on the new colour when it was read; the new colour's error rate %; the previous
    /// colour's error rate %), for the step summary's charts.
    timelines: Mutex<std::collections::BTreeMap<String, Vec<ChartPoint>>>,
}

/// One analysis window in the step summary's charts.
pub struct ChartPoint {
    /// The window's length in seconds, from the first exposure.
    pub seconds: u64,
    /// The step production was at when the window was read.
    pub share: u8,
    /// Error rates in percent.
    pub new_rate: f64,
    pub previous_rate: f64,
}

/// `HH:MM:SSZ` of a wall-clock time, for "until when" messages.
pub fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..).unwrap_or(&s).to_owned()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Reporter {
    /// `tty`: whether stderr is a terminal (bars) or not (plain lines).
    pub fn new(format: Format, quiet: bool, tty: bool) -> Self {
        let bars = (tty && format == Format::Text && !quiet).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Self {
            inner: Arc::new(Inner {
                format,
                quiet,
                bars,
                github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
                summary: std::env::var_os("GITHUB_STEP_SUMMARY").map(Into::into),
                timelines: Mutex::default(),
            }),
        }
    }

    /// For tests and library callers: plain lines, nothing to stdout.
    pub fn silent() -> Self {
        Self {
            inner: Arc::new(Inner {
                format: Format::Text,
                quiet: true,
                bars: None,
                github: false,
                summary: None,
                timelines: Mutex::default(),
            }),
        }
    }

    /// One event of the run: what happens now in `region` (or overall).
    pub fn event(&self, region: Option<&str>, phase: &str, message: impl Display) {
        self.emit("info", region, phase, &message.to_string());
    }

    /// A new window of the traffic analysis in `region`: an event whose JSON form carries
    /// `comparison` as `analysis`; `point` is kept for the step summary's charts.
    pub fn analysis<T: Serialize>(
        &self,
        region: &str,
        point: ChartPoint,
        message: &str,
        comparison: &T,
    ) {
        self.inner
            .timelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(region.to_owned())
            .or_default()
            .push(point);
        if self.inner.format == Format::Json {
            let line = json!({"type": "event", "ts": now_rfc3339(), "level": "info",
                              "region": region, "phase": "analysis", "message": message,
                              "analysis": comparison});
            println!("{line}");
        } else {
            self.emit("info", Some(region), "analysis", message);
        }
    }

    /// Mermaid charts (GitHub renders them in step summaries), two per region the analysis
    /// watched, over its windows: the step production was at when each was read, and both
    /// colours' error rates (on their own scale: a few percent would vanish on 0–100).
    pub fn analysis_charts(&self) -> Option<String> {
        let timelines = self
            .inner
            .timelines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if timelines.is_empty() {
            return None;
        }
        let mut md = String::from("### bluegreen: traffic analysis\n");
        for (region, points) in timelines.iter() {
            let list = |f: &dyn Fn(&ChartPoint) -> String| {
                points.iter().map(f).collect::<Vec<_>>().join(", ")
            };
            let x = list(&|p| p.seconds.to_string());
            let top = points
                .iter()
                .map(|p| p.new_rate.max(p.previous_rate))
                .fold(1.0_f64, f64::max);
            let top = (top * 1.2 * 10.0).ceil() / 10.0;
            md.push_str(&format!(
                "\n**{region}**: per analysis window (x: its length in seconds from the first \
                 exposure), the new colour's share of production traffic (%), then the error rates \
                 (%) of the new colour (first line) and the previous one (second line).\n\n\
                 ```mermaid\nxychart-beta\n    title \"{region}: traffic on the new colour\"\n    \
                 x-axis \"window (s)\" [{x}]\n    y-axis \"%\" 0 --> 100\n    line [{}]\n```\n\n\
                 ```mermaid\nxychart-beta\n    title \"{region}: error rate, new then previous\"\n    \
                 x-axis \"window (s)\" [{x}]\n    y-axis \"%\" 0 --> {top}\n    line [{}]\n    \
                 line [{}]\n```\n",
                list(&|p| p.share.to_string()),
                list(&|p| format!("{:.2}", p.new_rate)),
                list(&|p| format!("{:.2}", p.previous_rate)),
            ));
        }
        Some(md)
    }

    pub fn warn(&self, region: Option<&str>, phase: &str, message: impl Display) {
        self.emit("warn", region, phase, &message.to_string());
    }

    /// A wait that could look like a hang: says what for and until when.
    pub fn waiting(&self, region: Option<&str>, phase: &str, what: impl Display, for_: Duration) {
        let until = SystemTime::now() + for_;
        self.emit(
            "info",
            region,
            phase,
            &format!(
                "{what}: waiting up to {} (until {})",
                humantime::format_duration(Duration::from_millis(for_.as_millis() as u64)),
                clock(until)
            ),
        );
    }

    fn emit(&self, level: &str, region: Option<&str>, phase: &str, message: &str) {
        let i = &self.inner;
        match i.format {
            Format::Json => {
                let line = json!({"type": "event", "ts": now_rfc3339(), "level": level,
                                  "region": region, "phase": phase, "message": message});
                println!("{line}");
            }
            Format::Text if i.quiet && level != "warn" => {}
            Format::Text => {
                if let Some((mp, bars)) = &i.bars {
                    match region {
                        Some(r) => {
                            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                            let bar = bars.entry(r.to_owned()).or_insert_with(|| {
                                let b = mp.add(ProgressBar::new_spinner());
                                b.set_style(
                                    ProgressStyle::with_template(
                                        "{spinner} {prefix:>15} {wide_msg}",
                                    )
                                    .expect("static template"),
                                );
                                b.set_prefix(r.to_owned());
                                b.enable_steady_tick(Duration::from_millis(120));
                                b
                            });
                            bar.set_message(format!("{phase}: {message}"));
                            if level == "warn" {
                                let _ = mp.println(format!("{r}: {message}"));
                            }
                        }
                        None => {
                            let _ = mp.println(format!("{phase}: {message}"));
                        }
                    }
                } else {
                    let stamp = clock(SystemTime::now());
                    let who = region.map_or(String::new(), |r| format!(" [{r}]"));
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{stamp}{who} {phase}: {message}");
                }
            }
        }
    }

    /// Stops the bars so the result prints cleanly below them.
    pub fn finish(&self) {
        if let Some((_, bars)) = &self.inner.bars {
            for bar in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                bar.finish();
            }
        }
    }

    /// The command's result: text on stdout, or one JSON object.
    pub fn result<T: Serialize + Display>(&self, result: &T) {
        self.finish();
        match self.inner.format {
            Format::Json => {
                let mut v = serde_json::to_value(result).expect("results serialize");
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), json!("result"));
                }
                println!("{v}");
            }
            Format::Text => print!("{result}"),
        }
    }

    /// A failure, as the last word: text on stderr (and a GitHub annotation), or a JSON object.
    pub fn failure(&self, code: u8, message: &str) {
        self.finish();
        match self.inner.format {
            Format::Json => println!(
                "{}",
                json!({"type": "error", "ts": now_rfc3339(), "exit_code": code, "message": message})
            ),
            Format::Text => eprintln!("error: {message}"),
        }
        if self.inner.github {
            // Annotations are one line; newlines are encoded as GitHub documents.
            eprintln!(
                "::error title=bluegreen (exit {code})::{}",
                message.replace('%', "%25").replace('\n', "%0A")
            );
        }
    }

    /// Appends markdown to the GitHub step summary, when there is one.
    pub fn summary(&self, markdown: &str) {
        if let Some(path) = &self.inner.summary {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{markdown}"));
            if let Err(e) = written {
                self.warn(
                    None,
                    "summary",
                    format!("cannot write {}: {e}", path.display()),
                );
            }
        }
    }
}
