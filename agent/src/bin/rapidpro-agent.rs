//! `ocf:rapidpro:stack`, installed as /usr/lib/ocf/resource.d/rapidpro/stack.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(rapidpro_ha::stack::agent_main(&args));
}
