//! Facts about the machine tfbn runs on that several layers need: how many
//! threads to split work over, and the CPU vendor (TF's float32 `rsqrt`,
//! and so every batch-norm output, depends on it: docs/bn-arithmetic.md,
//! "rsqrt"). At the bottom of the module order: it imports nothing from
//! the crate.

/// The CPU vendor string from CPUID leaf 0 (`"GenuineIntel"`,
/// `"AuthenticAMD"`, …), or `"unknown"` off x86-64.
///
/// Golden files record the vendor of the machine that wrote them; the packet
/// rsqrt (and therefore every output of the packet channels) is only
/// reproducible bit for bit on the same vendor's `RSQRTPS`.
pub fn host_cpu_vendor() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 0 exists on every x86-64 processor.
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let mut bytes = Vec::with_capacity(12);
        for word in [r.ebx, r.edx, r.ecx] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        String::from_utf8_lossy(&bytes)
            .trim_end_matches('\0')
            .to_string()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "unknown".to_string()
    }
}

/// The host's available parallelism (at least 1), or `TFBN_THREADS` when
/// set to a positive number. Results never depend on it: work is only split
/// where the split cannot change a bit.
pub(crate) fn host_threads() -> usize {
    #[cfg(test)]
    if let Some(n) = THREADS_OVERRIDE.with(|t| t.get()) {
        return n;
    }
    if let Some(n) = std::env::var("TFBN_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
thread_local! {
    static THREADS_OVERRIDE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with [`host_threads`] answering `n` on this thread (tests only:
/// unlike `TFBN_THREADS`, it does not leak into tests running in parallel).
#[cfg(test)]
pub(crate) fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let old = THREADS_OVERRIDE.with(|t| t.replace(Some(n.max(1))));
    let r = f();
    THREADS_OVERRIDE.with(|t| t.set(old));
    r
}

