//! bluegreen: multi-region blue/green deployments for containers on AWS ECS.
//!
//! The binary (`main.rs`) parses the command line and renders results; everything it does is
//! here, so tests drive the same code.

#![warn(clippy::too_many_lines, clippy::too_many_arguments)]

pub mod aws;
pub mod cli;
pub mod config;
pub mod init;
pub mod report;
pub mod rollout;
