//! jemalloc set up as the `pigeon` binary sets it up (crates/pigeon/src/alloc.rs): background
//! threads, freed pages returned after 1 s, never left "muzzy". A test binary that declares
//! `#[global_allocator] static A: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;`
//! calls [`configure`] first, so that the memory alarm sees the RSS fall once queues drain.

use tikv_jemalloc_ctl::{Access, AsName};

/// Starts the background threads and sets the decay times of every arena (once per process).
pub fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tikv_jemalloc_ctl::background_thread::write(true).expect("jemalloc background threads");
        for (name, ms) in [
            ("arenas.dirty_decay_ms\0", 1000isize),
            ("arenas.muzzy_decay_ms\0", 0),
        ] {
            name.name().write(ms).expect("jemalloc decay");
        }
        let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
        for i in 0..arenas {
            for (key, ms) in [("dirty", 1000isize), ("muzzy", 0)] {
                let _ = format!("arena.{i}.{key}_decay_ms\0")
                    .as_str()
                    .name()
                    .write(ms);
            }
        }
    });
}
