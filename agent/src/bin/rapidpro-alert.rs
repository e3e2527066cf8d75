//! `rapidpro-alert`, the Pacemaker alert agent that emails and texts the
//! on-call people (installed as /usr/sbin/rapidpro-alert; see
//! `rapidpro_ha::alert`).

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(rapidpro_ha::alert::alert_main());
}
