//! The `llmsim` command line.

mod cli;

fn main() {
    // Piped into `head`, exit quietly when the reader goes away instead of panicking on the
    // failed write (Rust ignores SIGPIPE by default).
    sigpipe::reset();
    std::process::exit(cli::main());
}
