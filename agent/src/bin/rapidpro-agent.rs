//! `ocf:rapidpro:stack`, installed as /usr/lib/ocf/resource.d/rapidpro/stack.

#![forbid(unsafe_code)]

fn main() {
    // Lossy: an action that is not UTF-8 is an unknown action (3), not a panic.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(rapidpro_ha::stack::agent_main(&args));
}
