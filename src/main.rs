//! The `tfbn` command line: a thin shell over the library. Flags become one
//! validated settings value per command; the library never sees clap types.
//!
//! Exit status: 0 ok, 1 a parity or lint failure, 2 bad input or usage.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
