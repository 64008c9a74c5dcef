//! CloudWatch alarms named in the environment file: which of them are in ALARM.

use aws_sdk_cloudwatch::types::StateValue;
use serde::Serialize;
use thiserror::Error;

use super::{CallError, RegionClients};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmState {
    pub name: String,
    pub state: String,
    pub reason: Option<String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AlarmError {
    #[error(
        "alarm(s) {names} do not exist in {region}; check `alarms` in the environment file, or apply terraform/"
    )]
    Missing { region: String, names: String },
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The state of every alarm in `names`; an alarm the file names but AWS lacks is an error, so a
/// typo cannot silently disable a gate.
pub async fn states(c: &RegionClients, names: &[String]) -> Result<Vec<AlarmState>, AlarmError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    // DescribeAlarms takes at most 100 names per call.
    for chunk in names.chunks(100) {
        let out = c
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| CallError::new("DescribeAlarms", &c.region, &e))?;
        found.extend(
            out.metric_alarms()
                .iter()
                .map(|a| state_of(a.alarm_name(), a.state_value(), a.state_reason())),
        );
        found.extend(
            out.composite_alarms()
                .iter()
                .map(|a| state_of(a.alarm_name(), a.state_value(), a.state_reason())),
        );
    }
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !found.iter().any(|f| &f.name == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(AlarmError::Missing {
            region: c.region.clone(),
            names: missing.join(", "),
        });
    }
    Ok(found)
}

fn state_of(name: Option<&str>, state: Option<&StateValue>, reason: Option<&str>) -> AlarmState {
    AlarmState {
        name: name.unwrap_or_default().to_owned(),
        state: state.map_or("UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
        reason: reason.map(str::to_owned),
    }
}

/// The alarms in `names` that are in ALARM now.
pub async fn firing(c: &RegionClients, names: &[String]) -> Result<Vec<AlarmState>, AlarmError> {
    Ok(states(c, names)
        .await?
        .into_iter()
        .filter(|a| a.state == StateValue::Alarm.as_str())
        .collect())
}
