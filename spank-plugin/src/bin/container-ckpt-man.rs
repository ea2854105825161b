//! Writes the container_ckpt(8) manual page to stdout (scripts/package installs it).
fn main() {
    print!(
        "{}",
        spank_container_ckpt::manpage::render(env!("CARGO_PKG_VERSION"))
    );
}
