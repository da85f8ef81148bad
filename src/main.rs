use std::process::ExitCode;

fn main() -> ExitCode {
    herald::cli::run()
}
