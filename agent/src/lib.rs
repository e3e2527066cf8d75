//! What the binaries of this package share: `rapidproctl`'s clap
//! definitions ([`cli`]) and the man pages of the package ([`manpages`]),
//! written by `rapidpro-ha-manpages` for the Debian package.

#![forbid(unsafe_code)]

pub mod cli;
pub mod manpages;
