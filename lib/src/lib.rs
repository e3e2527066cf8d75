//! The library behind `ocf:rapidpro:stack`.
//!
//! Modules are named after the things an administrator knows: the OCF protocol
//! (`ocf`), the agent's parameters (`config`), PostgreSQL (`postgres`), Redis
//! (`redis`) and the Pacemaker cluster (`cluster`). `stack` ties them into the
//! agent's actions. Only `cmd` spawns processes, always with a deadline.
//!
//! No `unsafe` here: the one block the agent needs (a child's supplementary
//! groups, set between fork and exec) lives in the `rapidpro-ha-privdrop`
//! crate, where it can be read on its own.

#![forbid(unsafe_code)]

pub mod alert;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod ctl;
pub mod deadline;
pub mod euid;
pub mod ocf;
pub mod owned_dir;
pub mod postgres;
pub mod redis;
pub mod stack;
pub mod systemd;

#[cfg(test)]
pub(crate) mod fuzz_tests;
