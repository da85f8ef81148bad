use std::process::ExitCode;

/// mimalloc instead of the system allocator: intake allocates many small, short-lived
/// values per webhook, and glibc's malloc took about a tenth of herald's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    herald::cli::run()
}
