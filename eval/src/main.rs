//! `cae-bench`: pretrain CAE / BEiT encoders and measure them downstream.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let refused = keep_freed_memory_for_reuse();
    let cli = cae_bench::cli::Cli::parse();
    cae_bench::cli::init_tracing(cli.verbose);
    for name in refused {
        tracing::warn!("glibc refused mallopt({name}); its default stays");
    }
    match cae_bench::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Tunes glibc's allocator for a training step's pattern: a few hundred tensor buffers of
/// 0.1–30 MB allocated and freed per step, on every thread.
///
/// By default glibc serves blocks above a sliding threshold with fresh `mmap`s and gives freed
/// memory at the top of a heap back to the kernel, so the same buffers are page-faulted, zeroed
/// by the kernel and unmapped (with a TLB shootdown to the other core) again and again
/// (`docs/speed/perf-mini-step.log` before, `docs/speed/w25-3.log` after). Raising the threshold to
/// its largest value (32 MiB), never trimming, and growing heaps 64 MiB at a time keeps freed
/// buffers for reuse; peak RSS is unchanged (`docs/speed/w25-3.log`). `CAE_MALLOC=default`
/// leaves glibc's defaults, for A/B runs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
/// Returns the parameters glibc refused.
fn keep_freed_memory_for_reuse() -> Vec<&'static str> {
    if std::env::var("CAE_MALLOC").is_ok_and(|v| v == "default") {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for (name, param, value) in [
        ("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, 32 << 20),
        ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, i32::MAX),
        ("M_TOP_PAD", libc::M_TOP_PAD, 64 << 20),
    ] {
        // SAFETY: `mallopt` only sets allocator parameters (it takes the arena locks itself);
        // it is called first thing in `main`, before any other thread exists.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(param, value) };
        if ok != 1 {
            refused.push(name);
        }
    }
    refused
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory_for_reuse() -> Vec<&'static str> {
    Vec::new()
}
