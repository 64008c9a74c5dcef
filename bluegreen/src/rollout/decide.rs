//! What a command does about the journal's latest promote, decided from that record, what AWS
//! says now and what was asked: pure functions with tables of tests, like `status::next_step`.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::journal::{Outcome, Phase, Record};

/// The command that asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked<'a> {
    Promote { version: &'a str },
    Continue,
}

/// What AWS says now about one region of an unfinished promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionNow {
    /// Production is 100% on a colour whose primary task set runs the promote's digest.
    ServesRelease,
    /// Anything else (still on the previous release, split weights, not primary yet).
    Other,
    /// AWS could not be read.
    Unknown,
}

/// What to do before (or instead of) the work asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing unfinished: go ahead.
    Proceed,
    /// The unfinished promote finished in AWS (every region serves its digest at 100% as
    /// primary); only the journal missed its end: record it as promoted, then go on.
    RecordPromoted,
    /// A promote of the same version stopped part-way: roll back what it left, then start clean.
    RollBackFirst,
    /// `continue` the unfinished promote from where its journal says.
    Resume,
    /// Refused, saying why and what to run.
    Refuse(String),
}

/// The whole record's view of AWS: every region it names serves its release.
fn finished_in_aws(record: &Record, now: &BTreeMap<String, RegionNow>) -> bool {
    !record.regions.is_empty()
        && record
            .regions
            .keys()
            .all(|r| now.get(r) == Some(&RegionNow::ServesRelease))
}

/// `promote` and `continue` against the latest promote in the journal.
pub fn decide(
    env: &str,
    asked: Asked,
    latest: Option<&Record>,
    now: &BTreeMap<String, RegionNow>,
) -> Decision {
    let unfinished = latest.filter(|r| r.outcome.is_none());
    match (asked, unfinished) {
        (Asked::Promote { .. }, None) => Decision::Proceed,
        (Asked::Continue, None) => Decision::Refuse(format!(
            "{env} has no paused or unfinished promote to continue; see `bluegreen history -e {env}`"
        )),
        // A rollback was started: only a rollback finishes it (a promote of the same version
        // does, then starts clean).
        (Asked::Continue, Some(r)) if being_rolled_back(r) => Decision::Refuse(format!(
            "deployment {} of {} was being rolled back (phase {}); finish that with \
             `bluegreen rollback -e {env}`",
            r.id, r.version, r.phase
        )),
        (Asked::Promote { version }, Some(r)) if being_rolled_back(r) && r.version == version => {
            Decision::RollBackFirst
        }
        (_, Some(r)) if !being_rolled_back(r) && finished_in_aws(r, now) => {
            Decision::RecordPromoted
        }
        (Asked::Continue, Some(_)) => Decision::Resume,
        (Asked::Promote { version }, Some(r)) if r.version != version => Decision::Refuse(format!(
            "deployment {} of {} is unfinished (phase {}); finish or abort it first: \
                 `bluegreen continue -e {env}` or `bluegreen rollback -e {env}`",
            r.id, r.version, r.phase
        )),
        (Asked::Promote { .. }, Some(_)) => Decision::RollBackFirst,
    }
}

/// A rollback of the record started: its phase says so, or a region's does.
fn being_rolled_back(r: &Record) -> bool {
    r.phase == Phase::RollingBack || r.regions.values().any(|x| x.phase.rolling_back())
}

/// What `rollback` undoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackPlan {
    NothingToDo,
    /// These regions of this record (all it names after a completed promote; the ones it
    /// touched otherwise); `skipped`: touched but left out with `--region`.
    Regions {
        targets: Vec<String>,
        skipped: Vec<String>,
    },
}

/// Whether a promote still shapes what runs: it completed, is unfinished, or its rollback did
/// not finish. A rolled-back promote, or one that failed before deploying anything, does not.
pub fn in_effect(r: &Record) -> bool {
    matches!(
        r.outcome,
        None | Some(Outcome::Promoted) | Some(Outcome::RollbackFailed)
    )
}

/// Regions a deployment changed: a task definition or task set was created, or weights moved.
pub fn touched(record: &Record) -> Vec<String> {
    record
        .regions
        .iter()
        .filter(|(_, r)| {
            r.new_task_set.is_some() || r.new_task_definition.is_some() || r.weight > 0
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The regions `rollback` puts back, from the latest promote in effect, the regions the
/// environment file has, and `--region` (empty: all). A region the record needs that the file
/// no longer has is refused, naming it: its names (listener, service) are only in the file.
pub fn rollback_plan(
    env: &str,
    latest: Option<&Record>,
    in_file: &BTreeSet<String>,
    only: &[String],
) -> Result<RollbackPlan, String> {
    let Some(r) = latest.filter(|r| in_effect(r)) else {
        return Ok(RollbackPlan::NothingToDo);
    };
    let all = if r.outcome == Some(Outcome::Promoted) {
        r.regions.keys().cloned().collect()
    } else {
        touched(r)
    };
    if let Some(bad) = only.iter().find(|o| !all.contains(o)) {
        return Err(format!(
            "--region {bad}: deployment {} of {} did not change {bad}; it changed: {}",
            r.id,
            r.version,
            list(&all)
        ));
    }
    let (targets, skipped): (Vec<String>, Vec<String>) = all
        .into_iter()
        .partition(|x| only.is_empty() || only.contains(x));
    if let Some(missing) = targets.iter().find(|x| !in_file.contains(*x)) {
        let others: Vec<String> = targets
            .iter()
            .filter(|x| in_file.contains(*x))
            .map(|x| format!("--region {x}"))
            .collect();
        let or_others = if others.is_empty() {
            String::new()
        } else {
            format!(
                ", or roll back the other regions with `bluegreen rollback -e {env} {}`",
                others.join(" ")
            )
        };
        return Err(format!(
            "deployment {} of {} changed {missing}, which the environment file for {env} no longer \
             has: restore its [regions.{missing}] table to roll it back{or_others}",
            r.id, r.version
        ));
    }
    Ok(RollbackPlan::Regions { targets, skipped })
}

/// A rollback that would take regions off the air (their deployment was their first, so there
/// is no previous release to go back to) needs `--yes`; without it, the refusal says what it
/// would do and how to leave those regions out.
pub fn off_air_refusal(
    env: &str,
    record: &Record,
    targets: &[String],
    yes: bool,
) -> Option<String> {
    let off_air: Vec<String> = targets
        .iter()
        .filter(|r| record.regions.get(*r).is_some_and(|x| x.first_deployment()))
        .cloned()
        .collect();
    if yes || off_air.is_empty() {
        return None;
    }
    let others: Vec<String> = targets
        .iter()
        .filter(|r| !off_air.contains(r))
        .map(|r| format!("--region {r}"))
        .collect();
    let leave_out = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; to roll back only the others: `bluegreen rollback -e {env} {}`",
            others.join(" ")
        )
    };
    Some(format!(
        "deployment {} of {} was the first release in {}: rolling it back takes {} off the air \
         (production goes back to the colour it pointed at before, which has no targets, so the \
         ALB answers 503; the new task set is removed). Nothing was changed; run \
         `bluegreen rollback -e {env} --yes` to do that{leave_out}",
        record.id,
        record.version,
        list(&off_air),
        if off_air.len() == 1 { "it" } else { "them" }
    ))
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "no region".into()
    } else {
        v.join(", ")
    }
}

/// Whether the deployment is paused (stopped at `--until`, waiting for `continue`).
pub fn paused(r: &Record) -> bool {
    r.outcome.is_none() && r.phase == Phase::Paused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::journal::RegionRecord;

    fn record(version: &str, outcome: Option<Outcome>, regions: &[(&str, u8)]) -> Record {
        Record {
            id: "d1".into(),
            version: version.into(),
            outcome,
            phase: Phase::Deploying,
            regions: regions
                .iter()
                .map(|(r, w)| {
                    let rec = RegionRecord {
                        weight: *w,
                        new_task_set: (*w > 0).then(|| "ts".to_owned()),
                        ..Default::default()
                    };
                    ((*r).to_owned(), rec)
                })
                .collect(),
            ..Record::default()
        }
    }

    fn now(states: &[(&str, RegionNow)]) -> BTreeMap<String, RegionNow> {
        states.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect()
    }

    #[test]
    fn promote_and_continue_decide_from_the_record_and_aws() {
        use RegionNow::*;
        let two = [("us-east-1", 100), ("eu-west-1", 100)];
        let v12 = Asked::Promote { version: "v1.2.0" };
        type Case<'a> = (
            &'a str,
            Asked<'a>,
            Option<Record>,
            BTreeMap<String, RegionNow>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            ("no journal", v12, None, now(&[]), Decision::Proceed),
            (
                "last one finished",
                v12,
                Some(record("v1.1.0", Some(Outcome::Promoted), &two)),
                now(&[]),
                Decision::Proceed,
            ),
            (
                "same version stopped part-way",
                v12,
                Some(record("v1.2.0", None, &two)),
                now(&[("us-east-1", ServesRelease), ("eu-west-1", Other)]),
                Decision::RollBackFirst,
            ),
            (
                "same version finished in AWS, journal missed it",
                v12,
                Some(record("v1.2.0", None, &two)),
                now(&[("us-east-1", ServesRelease), ("eu-west-1", ServesRelease)]),
                Decision::RecordPromoted,
            ),
            (
                "a region unreadable is not finished",
                v12,
                Some(record("v1.2.0", None, &two)),
                now(&[("us-east-1", ServesRelease), ("eu-west-1", Unknown)]),
                Decision::RollBackFirst,
            ),
            (
                "continue, finished in AWS",
                Asked::Continue,
                Some(record("v1.2.0", None, &two)),
                now(&[("us-east-1", ServesRelease), ("eu-west-1", ServesRelease)]),
                Decision::RecordPromoted,
            ),
            (
                "continue mid-way",
                Asked::Continue,
                Some(record("v1.2.0", None, &two)),
                now(&[("us-east-1", Other), ("eu-west-1", Other)]),
                Decision::Resume,
            ),
            (
                "promote again over a rollback that stopped: finish it first",
                v12,
                Some(rolling_back(record("v1.2.0", None, &two))),
                now(&[("us-east-1", ServesRelease), ("eu-west-1", ServesRelease)]),
                Decision::RollBackFirst,
            ),
        ];
        for (case, asked, latest, aws, want) in cases {
            assert_eq!(decide("prod", asked, latest.as_ref(), &aws), want, "{case}");
        }
    }

    fn rolling_back(mut r: Record) -> Record {
        r.phase = Phase::RollingBack;
        r.regions.values_mut().next().expect("a region").phase =
            crate::aws::journal::RegionPhase::RolledBack;
        r
    }

    #[test]
    fn a_rollback_that_stopped_is_never_continued_or_recorded_promoted() {
        let two = [("us-east-1", 100), ("eu-west-1", 100)];
        let everywhere = now(&[
            ("us-east-1", RegionNow::ServesRelease),
            ("eu-west-1", RegionNow::ServesRelease),
        ]);
        let r = rolling_back(record("v1.2.0", None, &two));
        match decide("prod", Asked::Continue, Some(&r), &everywhere) {
            Decision::Refuse(m) => assert!(
                m.contains("was being rolled back") && m.contains("`bluegreen rollback -e prod`"),
                "{m}"
            ),
            other => panic!("continued a rollback: {other:?}"),
        }
        let other = Asked::Promote { version: "v1.3.0" };
        assert!(matches!(
            decide("prod", other, Some(&r), &everywhere),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn refusals_name_what_to_run() {
        let other = record("v1.1.0", None, &[("us-east-1", 10)]);
        let said = |d: Decision| match d {
            Decision::Refuse(m) => m,
            other => panic!("not refused: {other:?}"),
        };
        let m = said(decide(
            "prod",
            Asked::Promote { version: "v1.2.0" },
            Some(&other),
            &now(&[]),
        ));
        assert!(m.contains("deployment d1 of v1.1.0 is unfinished"), "{m}");
        assert!(m.contains("`bluegreen continue -e prod`"), "{m}");
        let m = said(decide("prod", Asked::Continue, None, &now(&[])));
        assert!(
            m.contains("prod has no paused or unfinished promote"),
            "{m}"
        );
    }

    #[test]
    fn rollback_plans_the_regions_from_the_record_the_file_and_the_flag() {
        let file: BTreeSet<String> = ["us-east-1", "eu-west-1", "ap-southeast-2"]
            .map(String::from)
            .into();
        let mid = record("v1.2.0", None, &[("us-east-1", 50), ("eu-west-1", 0)]);
        let done = record(
            "v1.2.0",
            Some(Outcome::Promoted),
            &[("us-east-1", 100), ("eu-west-1", 100)],
        );
        let gone = record("v1.2.0", Some(Outcome::RolledBack), &[("us-east-1", 0)]);
        let regions = |t: &[&str], s: &[&str]| {
            Ok(RollbackPlan::Regions {
                targets: t.iter().map(|x| x.to_string()).collect(),
                skipped: s.iter().map(|x| x.to_string()).collect(),
            })
        };
        type Case<'a> = (
            &'a str,
            Option<&'a Record>,
            Vec<String>,
            Result<RollbackPlan, String>,
        );
        let cases: Vec<Case> = vec![
            ("no journal", None, vec![], Ok(RollbackPlan::NothingToDo)),
            (
                "rolled back already",
                Some(&gone),
                vec![],
                Ok(RollbackPlan::NothingToDo),
            ),
            (
                "unfinished: what it touched",
                Some(&mid),
                vec![],
                regions(&["us-east-1"], &[]),
            ),
            (
                "completed: every region",
                Some(&done),
                vec![],
                regions(&["eu-west-1", "us-east-1"], &[]),
            ),
            (
                "--region picks",
                Some(&done),
                vec!["eu-west-1".into()],
                regions(&["eu-west-1"], &["us-east-1"]),
            ),
        ];
        for (case, latest, only, want) in cases {
            assert_eq!(rollback_plan("prod", latest, &file, &only), want, "{case}");
        }
    }

    #[test]
    fn rollback_refuses_a_region_the_file_lost_or_the_record_never_had() {
        let file: BTreeSet<String> = ["us-east-1"].map(String::from).into();
        let done = record(
            "v1.2.0",
            Some(Outcome::Promoted),
            &[("us-east-1", 100), ("eu-west-1", 100)],
        );
        let err = rollback_plan("prod", Some(&done), &file, &[]).unwrap_err();
        assert!(
            err.contains("changed eu-west-1, which the environment file for prod no longer has")
                && err.contains("restore its [regions.eu-west-1] table")
                && err.contains("`bluegreen rollback -e prod --region us-east-1`"),
            "{err}"
        );
        let lost_only = record("v1.2.0", None, &[("eu-west-1", 10)]);
        let err = rollback_plan("prod", Some(&lost_only), &file, &[]).unwrap_err();
        assert!(
            err.ends_with("restore its [regions.eu-west-1] table to roll it back"),
            "{err}"
        );
        let err =
            rollback_plan("prod", Some(&done), &file, &["ap-southeast-2".into()]).unwrap_err();
        assert!(
            err.contains("--region ap-southeast-2: deployment d1"),
            "{err}"
        );
        // Leaving the lost region out is the way through.
        assert_eq!(
            rollback_plan("prod", Some(&done), &file, &["us-east-1".into()]),
            Ok(RollbackPlan::Regions {
                targets: vec!["us-east-1".into()],
                skipped: vec!["eu-west-1".into()]
            })
        );
    }

    fn first(previous_colour: &str) -> RegionRecord {
        RegionRecord {
            previous_colour: Some(previous_colour.into()),
            new_task_set: Some("ts-new".into()),
            weight: 100,
            ..RegionRecord::default()
        }
    }

    #[test]
    fn rolling_back_a_first_release_needs_yes() {
        let mut r = record("v1.0.0", Some(Outcome::Promoted), &[("us-east-1", 100)]);
        for x in r.regions.values_mut() {
            x.previous_task_set = Some("ts-old".into());
        }
        r.regions.insert("eu-west-1".into(), first("blue"));
        let both = vec!["eu-west-1".to_owned(), "us-east-1".to_owned()];
        let cases: [(&[String], bool, Option<&str>); 5] = [
            (&both, false, Some("first release in eu-west-1")),
            (&both, true, None),
            (&both[1..], false, None),
            (&both[..1], false, Some("takes it off the air")),
            (&[], false, None),
        ];
        for (targets, yes, says) in cases {
            let out = off_air_refusal("prod", &r, targets, yes);
            match (says, &out) {
                (None, None) => {}
                (Some(s), Some(m)) => assert!(m.contains(s), "{targets:?} {yes}: {m}"),
                _ => panic!("{targets:?} yes={yes}: {out:?}"),
            }
        }
        let m = off_air_refusal("prod", &r, &both, false).unwrap();
        assert!(
            m.contains("--yes") && m.contains("--region us-east-1"),
            "{m}"
        );
        assert!(!m.contains("--region eu-west-1"), "{m}");
    }
}
