//! `bluegreen init`: an environment file from Terraform's `bluegreen` output.
//!
//! Terraform owns the names (accounts, roles, repositories, the regions and their resources, the
//! lock, the test route); the user owns everything else (waves, `[strategy]`, `[hooks]`, the
//! lock's lease, probes, comments). `render` rewrites the first in place and keeps every byte of
//! the second: on an existing file a value Terraform agrees with is left as it is, comments and
//! layout included, so a file in step with Terraform renders to itself.
//!
//! Data flows one way: [`read_outputs`] (JSON text → [`Outputs`]) → [`render`] (the file's text,
//! or the template for a new one → new text and notes) → the caller diffs and writes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// What Terraform's `bluegreen` output says, checked.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub account_id: String,
    pub role_arn: String,
    pub source: SourceOut,
    pub test_header_parameter: String,
    pub lock_table: String,
    pub lock_region: String,
    /// Per region, in Terraform's (alphabetical) order.
    pub regions: BTreeMap<String, RegionOut>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceOut {
    pub account_id: String,
    pub region: String,
    pub repository: String,
    pub role_arn: Option<String>,
}

/// One region's names, as the region module's `names` output gives them.
#[derive(Debug, Clone)]
pub struct RegionOut {
    /// The `[defaults]`/`[regions.<name>]` keys, in the order a new file lists them.
    pub keys: Vec<(&'static str, Value)>,
    pub repository: String,
    pub test_header: String,
}

/// The region keys Terraform owns, in file order, and whether each is a number.
const REGION_KEYS: &[(&str, Kind)] = &[
    ("cluster", Kind::Str),
    ("service", Kind::Str),
    ("task_family", Kind::Str),
    ("load_balancer", Kind::Str),
    ("listener_port", Kind::Port),
    ("test_listener_port", Kind::Port),
    ("blue_target_group", Kind::Str),
    ("green_target_group", Kind::Str),
    ("alarms", Kind::Strs),
];

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Port,
    Strs,
}

const HOW: &str = "pipe in `terraform output -json` (or `terraform show -json PLANFILE`) of the \
                   environment's root; its `bluegreen` output is what init reads \
                   (environments/prod/outputs.tf shows it)";

/// Reads Terraform's JSON: `terraform output -json` (every output, each `{sensitive, type,
/// value}`), `terraform output -json bluegreen` (the value alone), `terraform show -json` of a
/// state, or of a plan file (its planned values; a value known only after apply is an error).
pub fn read_outputs(text: &str) -> Result<Outputs, String> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| format!("the input is not JSON ({e}); {HOW}"))?;
    let (value, sensitive) = bluegreen_value(&json)?;
    outputs(&At {
        v: value,
        path: "bluegreen".into(),
        sensitive,
    })
}

/// Finds the `bluegreen` output's value in any of the shapes Terraform writes, and whether it is
/// marked sensitive (then no error shows a value of it).
fn bluegreen_value(json: &Json) -> Result<(&Json, bool), String> {
    let Some(top) = json.as_object() else {
        return Err(format!("the input is JSON but not an object; {HOW}"));
    };
    if let Some(major) = top
        .get("format_version")
        .and_then(Json::as_str)
        .filter(|v| !v.starts_with("1."))
    {
        return Err(format!(
            "Terraform's JSON format {major} is not one bluegreen reads (1.x); use Terraform 1.x"
        ));
    }
    let outputs = if let Some(planned) = top.get("planned_values") {
        unknown_after_apply(json)?;
        planned.get("outputs")
    } else if let Some(values) = top.get("values") {
        values.get("outputs")
    } else if top.contains_key("format_version") {
        // `terraform show -json` of an empty state: no values at all.
        None
    } else if top.contains_key("regions") && top.contains_key("account_id") {
        return Ok((json, false));
    } else {
        Some(json)
    };
    let outputs = outputs.and_then(Json::as_object);
    let Some(output) = outputs.and_then(|o| o.get("bluegreen")) else {
        let names: Vec<&str> = outputs
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(format!(
            "Terraform's outputs have no `bluegreen` output (they have: {}); add it to the \
             environment's root (environments/prod/outputs.tf shows it) and terraform apply, then \
             {HOW}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    };
    let sensitive = output.get("sensitive") == Some(&Json::Bool(true));
    let value = output.get("value").ok_or_else(|| {
        "the `bluegreen` output has no value; is it known only after apply? Run init after \
         terraform apply"
            .to_owned()
    })?;
    Ok((value, sensitive))
}

/// A plan's `bluegreen` output with parts Terraform knows only after apply: names them.
fn unknown_after_apply(plan: &Json) -> Result<(), String> {
    let Some(unknown) = plan.pointer("/output_changes/bluegreen/after_unknown") else {
        return Ok(());
    };
    let mut paths = Vec::new();
    unknown_paths(unknown, "bluegreen", &mut paths);
    if paths.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the plan knows these only after apply: {}; check against `terraform output -json` after \
         terraform apply instead",
        paths.join(", ")
    ))
}

fn unknown_paths(v: &Json, path: &str, out: &mut Vec<String>) {
    match v {
        Json::Bool(true) => out.push(path.to_owned()),
        Json::Object(o) => o
            .iter()
            .for_each(|(k, v)| unknown_paths(v, &format!("{path}.{k}"), out)),
        Json::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| unknown_paths(v, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// A JSON value and where it is in the `bluegreen` output, for errors that name it (and show
/// it, unless the output is sensitive).
struct At<'a> {
    v: &'a Json,
    path: String,
    sensitive: bool,
}

impl<'a> At<'a> {
    fn at(&self, v: &'a Json, path: String) -> At<'a> {
        At {
            v,
            path,
            sensitive: self.sensitive,
        }
    }

    /// The value as an error may show it.
    fn shown(&self) -> String {
        if self.sensitive {
            "a value not shown (the output is sensitive)".to_owned()
        } else {
            self.v.to_string()
        }
    }

    fn key(&self, k: &str) -> Result<At<'a>, String> {
        let obj = self.object()?;
        obj.get(k)
            .map(|v| self.at(v, format!("{}.{k}", self.path)))
            .ok_or_else(|| {
                format!(
                    "{}.{k} is missing (the output has {}); update the environment's bluegreen \
                     output (environments/prod/outputs.tf shows every key) and terraform apply",
                    self.path,
                    obj.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }

    fn object(&self) -> Result<&'a serde_json::Map<String, Json>, String> {
        self.v.as_object().ok_or_else(|| self.wrong("an object"))
    }

    fn str(&self) -> Result<String, String> {
        match self.v.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
            Some(_) => Err(format!("{} is empty", self.path)),
            None => Err(self.wrong("a string")),
        }
    }

    fn opt_str(&self) -> Result<Option<String>, String> {
        if self.v.is_null() {
            Ok(None)
        } else {
            self.str().map(Some)
        }
    }

    fn wrong(&self, want: &str) -> String {
        format!("{} must be {want}, not {}", self.path, self.shown())
    }
}

fn outputs(bg: &At) -> Result<Outputs, String> {
    let account_id = account(&bg.key("account_id")?)?;
    let source = bg.key("source")?;
    let lock = bg.key("lock")?;
    let regions = bg.key("regions")?;
    let mut by_region = BTreeMap::new();
    for (name, v) in regions.object()? {
        let at = regions.at(v, format!("{}.{name}", regions.path));
        if !crate::config::REGIONS.contains(&name.as_str()) {
            return Err(format!(
                "{}: {name:?} is not an AWS region bluegreen deploys to",
                at.path
            ));
        }
        by_region.insert(name.clone(), region(&at)?);
    }
    if by_region.is_empty() {
        return Err(format!(
            "{} is empty: Terraform creates no region",
            regions.path
        ));
    }
    Ok(Outputs {
        account_id,
        role_arn: bg.key("role_arn")?.str()?,
        source: SourceOut {
            account_id: account(&source.key("account_id")?)?,
            region: source.key("region")?.str()?,
            repository: source.key("repository")?.str()?,
            role_arn: source.key("role_arn")?.opt_str()?,
        },
        test_header_parameter: bg.key("test_header_parameter")?.str()?,
        lock_table: lock.key("table")?.str()?,
        lock_region: lock.key("region")?.str()?,
        regions: by_region,
    })
}

fn account(at: &At) -> Result<String, String> {
    let s = at.str()?;
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s)
    } else {
        let shown = if at.sensitive {
            at.shown()
        } else {
            format!("{s:?}")
        };
        Err(format!(
            "{} is {shown}, not a 12-digit AWS account ID",
            at.path
        ))
    }
}

fn region(at: &At) -> Result<RegionOut, String> {
    let mut keys = Vec::new();
    for &(key, kind) in REGION_KEYS {
        let v = at.key(key)?;
        keys.push((key, value_of(&v, kind)?));
    }
    Ok(RegionOut {
        keys,
        repository: at.key("repository")?.str()?,
        test_header: at.key("test_header")?.str()?,
    })
}

fn value_of(at: &At, kind: Kind) -> Result<Value, String> {
    Ok(match kind {
        Kind::Str => Value::from(at.str()?),
        Kind::Port => match at.v.as_i64() {
            Some(p) if (1..=65535).contains(&p) => Value::from(p),
            _ => return Err(at.wrong("a port number (1-65535)")),
        },
        Kind::Strs => {
            let items = at.v.as_array().ok_or_else(|| at.wrong("a list"))?;
            let mut strs = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let item = at.at(v, format!("{}[{i}]", at.path));
                strs.push(item.str()?);
            }
            Value::Array(strs.into_iter().collect())
        }
    })
}

/// The new text and what changed that a diff alone would not explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub notes: Vec<String>,
}

/// The environment file for `outputs`: `existing`'s text with Terraform's values written over
/// it, or, for a new file, the template's.
pub fn render(env: &str, existing: Option<&str>, out: &Outputs) -> Result<Rendered, String> {
    let one = |what: &str, f: fn(&RegionOut) -> &String| -> Result<String, String> {
        let all: BTreeSet<&String> = out.regions.values().map(f).collect();
        match all.into_iter().collect::<Vec<_>>().as_slice() {
            [v] => Ok((*v).clone()),
            many => Err(format!(
                "the regions disagree on {what} ({}): bluegreen uses one for every region; give \
                 every region module the same",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    };
    let header = one("test_header", |r| &r.test_header)?;
    let repository = one("repository", |r| &r.repository)?;
    let text = existing.map_or_else(|| template(env), str::to_owned);
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("the existing file is not TOML: {e}; fix it, or move it away and run init again")
    })?;
    double_positions(doc.as_table_mut());
    let mut notes = Vec::new();
    let root = doc.as_table_mut();
    set(root, "account_id", Value::from(out.account_id.clone()));
    set(root, "role_arn", Value::from(out.role_arn.clone()));
    let src = table(root, "source")?;
    set(
        src,
        "account_id",
        Value::from(out.source.account_id.clone()),
    );
    set(src, "region", Value::from(out.source.region.clone()));
    set(
        src,
        "repository",
        Value::from(out.source.repository.clone()),
    );
    match &out.source.role_arn {
        Some(r) => set(src, "role_arn", Value::from(r.clone())),
        None => drop(src.remove("role_arn")),
    }
    set(
        table(root, "target")?,
        "repository",
        Value::from(repository),
    );
    let tt = table(root, "test_traffic")?;
    set(tt, "header", Value::from(header));
    set(
        tt,
        "parameter",
        Value::from(out.test_header_parameter.clone()),
    );
    let lock = table(root, "lock")?;
    set(lock, "table", Value::from(out.lock_table.clone()));
    set(lock, "region", Value::from(out.lock_region.clone()));
    let order = waves(root, out, &mut notes);
    regions(root, out, &order, &mut notes)?;
    Ok(Rendered {
        text: doc.to_string(),
        notes,
    })
}

/// A new file: the names are placeholders `render` overwrites; the strategy is a starting point
/// for the user to tune.
fn template(env: &str) -> String {
    format!(
        r#"# bluegreen's environment file for {env}, written by `bluegreen init -e {env}` from Terraform's
# bluegreen output. init rewrites the names Terraform owns (accounts, roles, repositories, regions,
# the lock) and keeps the rest as you write it: waves, [strategy], [hooks], probes, comments.

account_id = ""
role_arn = ""
# Ordered groups of regions: a wave starts after the previous one has completed its bake.
waves = []

# Where release images come from: promote copies them by digest to [target] in every region
# (nothing to copy where both are one registry).
[source]
account_id = ""
region = ""
repository = ""

[target]
repository = ""

# Test traffic reaches the new colour only with this header; its value is kept in SSM Parameter Store.
[test_traffic]
header = ""
parameter = ""

# Every region's keys, once (the names terraform/ gives every region): each [regions.<name>]
# table inherits them and says only what differs there.
[defaults]
cluster = ""
service = ""
# The task definition family a region's first release is registered from (Terraform's template).
task_family = ""
load_balancer = ""
listener_port = 0
test_listener_port = 0
blue_target_group = ""
green_target_group = ""
alarms = []
probe_path = "/health"

[strategy]
# Percent of production traffic on the new release after each step.
steps = [10, 50, 100]
bake = "5m"
final_bake = "10m"
poll = "5s"
ready_timeout = "10m"
# Findings at or above this severity refuse an image: "CRITICAL", "HIGH", ... or "none".
scan_threshold = "CRITICAL"

[lock]
table = ""
region = ""
lease = "2m"
"#
    )
}

/// Parsed tables carry their place in the file; doubled, a new table fits between two of them.
fn double_positions(t: &mut Table) {
    for (_, item) in t.iter_mut() {
        if let Some(sub) = item.as_table_mut() {
            if let Some(p) = sub.position() {
                sub.set_position(Some(p * 2));
            }
            double_positions(sub);
        }
    }
}

/// The table `name` of the root, made when the file has none.
fn table<'t>(root: &'t mut Table, name: &str) -> Result<&'t mut Table, String> {
    let item = root.entry(name).or_insert_with(toml_edit::table);
    item.as_table_mut().ok_or_else(|| {
        format!("`{name}` in the existing file is not a table: write it as [{name}]")
    })
}

/// Sets `key` to `v`, keeping the key, its comments and the value's trailing comment when the
/// file already has it; an equal value is left untouched, formatting and all.
fn set(t: &mut Table, key: &str, v: Value) {
    if let Some(old) = t.get_mut(key).and_then(Item::as_value_mut) {
        if same(old, &v) {
            return;
        }
        let decor = old.decor().clone();
        *old = v;
        *old.decor_mut() = decor;
        return;
    }
    t.insert(key, Item::Value(v));
}

/// Equal as TOML values, whatever their formatting.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        _ => false,
    }
}

/// The file's waves with Terraform's regions: a region Terraform no longer has leaves its wave
/// (an emptied wave goes), and new regions deploy in a new last wave. A new file gets the lock's
/// region alone first, then every other region. Returns the regions in wave order.
fn waves(root: &mut Table, out: &Outputs, notes: &mut Vec<String>) -> Vec<String> {
    let known: BTreeSet<&String> = out.regions.keys().collect();
    let written: Option<Vec<Vec<String>>> = root
        .get("waves")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(strings).collect());
    let mut waves = match written {
        Some(w) if !w.is_empty() => w,
        _ => first_waves(out),
    };
    for wave in &mut waves {
        wave.retain(|r| {
            let keep = known.contains(r);
            if !keep {
                notes.push(format!(
                    "waves: {r} is no longer in Terraform's regions; it leaves its wave"
                ));
            }
            keep
        });
    }
    waves.retain(|w| !w.is_empty());
    let placed: BTreeSet<String> = waves.iter().flatten().cloned().collect();
    let new: Vec<String> = known
        .iter()
        .filter(|r| !placed.contains(**r))
        .map(|r| (*r).clone())
        .collect();
    if !new.is_empty() && !placed.is_empty() {
        notes.push(format!(
            "waves: {} new in Terraform, deployed in a new last wave; move to the wave it belongs in",
            new.join(", ")
        ));
    }
    if !new.is_empty() {
        waves.push(new);
    }
    let value: Array = waves
        .iter()
        .map(|w| Value::Array(w.iter().map(String::as_str).collect()))
        .collect();
    set(root, "waves", Value::Array(value));
    waves.into_iter().flatten().collect()
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    })
}

fn first_waves(out: &Outputs) -> Vec<Vec<String>> {
    let first = if out.regions.contains_key(&out.lock_region) {
        out.lock_region.clone()
    } else {
        out.regions.keys().next().cloned().unwrap_or_default()
    };
    let rest: Vec<String> = out
        .regions
        .keys()
        .filter(|r| **r != first)
        .cloned()
        .collect();
    [vec![first], rest]
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect()
}

/// Each key Terraform owns, with the value `[defaults]` gets (None: every region says its own).
type Shared = Vec<(&'static str, Option<Value>)>;

/// `[defaults]`: each key Terraform owns with the value most regions share (made, before the
/// first region table, when the file has none). Returns the keys and its place in the file.
fn defaults(root: &mut Table, out: &Outputs) -> Result<(Shared, Option<isize>), String> {
    let first_region_pos = root
        .get("regions")
        .and_then(Item::as_table)
        .and_then(|t| t.iter().filter_map(|(_, i)| i.as_table()?.position()).min());
    let defaults = table(root, "defaults")?;
    if defaults.position().is_none() {
        defaults.set_position(first_region_pos.map(|p| p - 1));
    }
    let shared: Shared = REGION_KEYS
        .iter()
        .map(|&(key, _)| {
            let now = defaults.get(key).and_then(Item::as_value);
            (key, most_shared(out, key, now))
        })
        .collect();
    for (key, v) in &shared {
        match v {
            Some(v) => set(defaults, key, v.clone()),
            None => drop(defaults.remove(key)),
        }
    }
    Ok((shared, defaults.position()))
}

/// `[defaults]` and `[regions.<name>]`: each key Terraform owns goes to `[defaults]` with the
/// value most regions share, and to a region's own table where that region differs. Keys it does
/// not own (probe, probe_path, container) stay where they are.
fn regions(
    root: &mut Table,
    out: &Outputs,
    order: &[String],
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let (shared, defaults_pos_now) = defaults(root, out)?;
    let regions = root.entry("regions").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    let regions = regions
        .as_table_mut()
        .ok_or("`regions` in the existing file is not a table: write [regions.<name>] tables")?;
    regions.retain(|name, _| {
        let keep = out.regions.contains_key(name);
        if !keep {
            notes.push(format!(
                "[regions.{name}] removed: Terraform no longer creates that region"
            ));
        }
        keep
    });
    let fill = |t: &mut Table, own: &RegionOut| {
        for ((key, default), (_, v)) in shared.iter().zip(&own.keys) {
            match default {
                Some(d) if same(d, v) => drop(t.remove(key)),
                _ => set(t, key, v.clone()),
            }
        }
    };
    for (name, item) in regions.iter_mut() {
        let t = item
            .as_table_mut()
            .ok_or_else(|| format!("regions.{name} in the existing file is not a table"))?;
        fill(t, &out.regions[name.get()]);
    }
    // New region tables go after the last one in the file (after [defaults] in a file with
    // none), in wave order, each right under the one before when that one is empty, as
    // `[regions.a]` `[regions.b]` lines.
    let last = regions
        .iter()
        .filter_map(|(_, i)| i.as_table())
        .max_by_key(|t| t.position());
    let mut after_empty = last.is_some_and(Table::is_empty);
    let new_pos = last
        .map_or(defaults_pos_now, |t| t.position())
        .map(|p| p + 1);
    let new: Vec<&String> = order.iter().filter(|r| !regions.contains_key(r)).collect();
    for name in new {
        let mut t = Table::new();
        t.set_position(new_pos);
        t.decor_mut()
            .set_prefix(if after_empty { "" } else { "\n" });
        fill(&mut t, &out.regions[name]);
        after_empty = t.is_empty();
        regions.insert(name, Item::Table(t));
    }
    Ok(())
}

/// The value of `key` that most regions share; none when every one of several regions has its
/// own. A tie goes to the file's `[defaults]` value (`now`) when it is among them, so a file
/// written by hand is not reshuffled, else to the first region's.
fn most_shared(out: &Outputs, key: &str, now: Option<&Value>) -> Option<Value> {
    let values: Vec<&Value> = out
        .regions
        .values()
        .filter_map(|r| r.keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v))
        .collect();
    let count = |v: &Value| values.iter().filter(|w| same(w, v)).count();
    let best = values.iter().copied().max_by_key(|v| {
        // max_by_key keeps the last maximum; rank earlier regions higher on ties.
        let first = values.iter().position(|w| same(w, v)).unwrap_or(0);
        (count(v), usize::MAX - first)
    })?;
    if let Some(now) = now.filter(|v| count(v) == count(best)) {
        return Some(now.clone());
    }
    (values.len() == 1 || count(best) > 1).then(|| best.clone())
}

/// A unified diff of `old` to `new` for `path`, or none when they are equal.
pub fn diff(path: &str, old: &str, new: &str) -> Option<String> {
    (old != new).then(|| {
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(path, &format!("{path} (from Terraform)"))
            .to_string()
    })
}

/// What `bluegreen init` did.
#[derive(Debug, serde::Serialize)]
pub struct Done {
    pub env: String,
    pub path: String,
    /// "created", "updated" or "unchanged".
    pub action: &'static str,
    /// The unified diff of what was written over the old file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub notes: Vec<String>,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.diff {
            write!(f, "{d}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        match self.action {
            "unchanged" => writeln!(f, "{} is in step with Terraform", self.path),
            action => writeln!(
                f,
                "{action} {}; `bluegreen validate -e {}` shows what it resolves to",
                self.path, self.env
            ),
        }
    }
}

/// `bluegreen init`: renders, validates, and writes when it may. `input` is Terraform's JSON.
pub fn command(
    config_dir: &std::path::Path,
    env: &str,
    input: &str,
    force: bool,
    check: bool,
) -> Result<Done, crate::rollout::Error> {
    use crate::rollout::Error;
    let valid = !env.is_empty()
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::Refused(format!(
            "{env:?} is not an environment name: use letters, digits, - and _ (e.g. prod)"
        )));
    }
    let path = crate::config::env_file(config_dir, env);
    let shown = path.display().to_string();
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Refused(format!("cannot read {shown}: {e}"))),
    };
    let outputs = read_outputs(input).map_err(Error::Refused)?;
    let rendered = render(env, existing.as_deref(), &outputs)
        .map_err(|e| Error::Refused(format!("{shown}: {e}; nothing was written")))?;
    crate::config::parse(&path, env, &rendered.text).map_err(|e| {
        Error::Refused(format!(
            "the file init would write does not validate: {e}; a key Terraform owns is fixed \
             in Terraform, any other in the file; nothing was written"
        ))
    })?;
    let diff = diff(&shown, existing.as_deref().unwrap_or(""), &rendered.text);
    let done = |action, diff| Done {
        env: env.to_owned(),
        path: shown.clone(),
        action,
        diff,
        notes: rendered.notes.clone(),
    };
    let Some(diff) = diff.filter(|_| existing.as_deref() != Some(rendered.text.as_str())) else {
        return Ok(done("unchanged", None));
    };
    if check {
        return Err(Error::Failed(match existing {
            None => format!("{shown} does not exist; write it with `bluegreen init -e {env}`"),
            Some(_) => format!(
                "{shown} differs from Terraform's outputs:\n{diff}write it with `bluegreen init \
                 -e {env} --force`, or change Terraform"
            ),
        }));
    }
    if existing.is_some() && !force {
        return Err(Error::Refused(format!(
            "{shown} exists and differs from Terraform's outputs:\n{diff}nothing was written; \
             pass --force to write it"
        )));
    }
    write(&path, &rendered.text)
        .map_err(|e| Error::Failed(format!("cannot write {shown}: {e}")))?;
    Ok(done(
        if existing.is_some() {
            "updated"
        } else {
            "created"
        },
        Some(diff),
    ))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(cluster: &str, port: i64) -> RegionOut {
        RegionOut {
            keys: REGION_KEYS
                .iter()
                .map(|&(k, _)| match k {
                    "cluster" => (k, Value::from(cluster)),
                    "listener_port" => (k, Value::from(port)),
                    _ => (k, Value::from("x")),
                })
                .collect(),
            repository: "hello".into(),
            test_header: "X-Bluegreen-Test".into(),
        }
    }

    /// (region, cluster, listener port)
    type Region<'a> = (&'a str, &'a str, i64);

    fn outputs(regions: &[Region]) -> Outputs {
        Outputs {
            account_id: "222222222222".into(),
            role_arn: "arn:aws:iam::222222222222:role/deploy".into(),
            source: SourceOut {
                account_id: "111111111111".into(),
                region: "us-east-1".into(),
                repository: "hello".into(),
                role_arn: None,
            },
            test_header_parameter: "/p".into(),
            lock_table: "t".into(),
            lock_region: "eu-west-1".into(),
            regions: regions
                .iter()
                .map(|&(r, c, p)| (r.to_owned(), region(c, p)))
                .collect(),
        }
    }

    #[test]
    fn the_value_most_regions_share_is_the_default() {
        #[rustfmt::skip]
        let cases: &[(&[Region], Option<&str>, Option<&str>)] = &[
            (&[("us-east-1", "a", 80)], None, Some("a")),
            (&[("us-east-1", "a", 80), ("eu-west-1", "a", 80)], None, Some("a")),
            (&[("ap-south-1", "b", 80), ("eu-west-1", "a", 80), ("us-east-1", "a", 80)], None, Some("a")),
            // The file's [defaults] value loses to a value more regions share...
            (&[("ap-south-1", "b", 80), ("eu-west-1", "a", 80), ("us-east-1", "a", 80)], Some("b"), Some("a")),
            // ...and wins a tie; without one, a tie goes to the first region's (ap-south-1 sorts first).
            (&[("ap-south-1", "b", 80), ("eu-west-1", "a", 80), ("us-east-1", "b", 80), ("us-west-2", "a", 80)], None, Some("b")),
            (&[("ap-south-1", "b", 80), ("eu-west-1", "a", 80), ("us-east-1", "b", 80), ("us-west-2", "a", 80)], Some("a"), Some("a")),
            // Two regions, two values: no default, unless the file has one of them there.
            (&[("eu-west-1", "a", 80), ("us-east-1", "b", 80)], None, None),
            (&[("eu-west-1", "a", 80), ("us-east-1", "b", 80)], Some("b"), Some("b")),
            (&[("eu-west-1", "a", 80), ("us-east-1", "b", 80)], Some("c"), None),
        ];
        for (regions, now, want) in cases {
            let now = now.map(Value::from);
            let got = most_shared(&outputs(regions), "cluster", now.as_ref());
            assert_eq!(
                got.as_ref().and_then(Value::as_str),
                *want,
                "{regions:?} {now:?}"
            );
        }
    }

    #[test]
    fn waves_follow_terraforms_regions() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], &str, usize)] = &[
            // A new file: the lock's region (eu-west-1) alone first.
            ("waves = []", &["eu-west-1", "us-east-1", "ap-south-1"], r#"[["eu-west-1"], ["ap-south-1", "us-east-1"]]"#, 0),
            ("waves = [[\"us-east-1\"]]", &["us-east-1"], r#"[["us-east-1"]]"#, 0),
            // A region gone: it leaves its wave, and the emptied wave goes.
            ("waves = [[\"us-east-1\"], [\"eu-west-1\"]]", &["us-east-1"], r#"[["us-east-1"]]"#, 1),
            // A new region: a last wave of its own, with a note.
            ("waves = [[\"us-east-1\"]]", &["us-east-1", "ap-south-1"], r#"[["us-east-1"], ["ap-south-1"]]"#, 1),
        ];
        for (file, regions, want, notes) in cases {
            let mut doc: DocumentMut = file.parse().unwrap();
            let regions: Vec<(&str, &str, i64)> = regions.iter().map(|r| (*r, "c", 80)).collect();
            let mut seen = Vec::new();
            waves(doc.as_table_mut(), &outputs(&regions), &mut seen);
            assert_eq!(
                doc["waves"].as_value().unwrap().to_string().trim(),
                *want,
                "{file}"
            );
            assert_eq!(seen.len(), *notes, "{file}: {seen:?}");
        }
    }

    #[test]
    fn a_region_that_differs_says_so_in_its_own_table() {
        let out = outputs(&[
            ("eu-west-1", "a", 80),
            ("us-east-1", "a", 443),
            ("us-west-2", "b", 443),
        ]);
        let text =
            "waves = []\n[defaults]\nprobe_path = \"/health\"\n\n[strategy]\nsteps = [100]\n";
        let mut doc: DocumentMut = text.parse().unwrap();
        double_positions(doc.as_table_mut());
        let order = waves(doc.as_table_mut(), &out, &mut Vec::new());
        regions(doc.as_table_mut(), &out, &order, &mut Vec::new()).unwrap();
        let text = doc.to_string();
        let defaults = text.split("[regions.").next().unwrap();
        assert!(
            defaults.contains("cluster = \"a\"") && defaults.contains("listener_port = 443"),
            "{text}"
        );
        assert!(
            text.contains("[regions.eu-west-1]\nlistener_port = 80\n"),
            "{text}"
        );
        assert!(
            text.contains("\n[regions.us-east-1]\n[regions.us-west-2]\ncluster = \"b\"\n"),
            "{text}"
        );
        assert!(
            text.ends_with("[strategy]\nsteps = [100]\n"),
            "regions before [strategy]: {text}"
        );
    }
}
