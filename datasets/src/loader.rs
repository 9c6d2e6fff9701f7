//! A deterministic, prefetching batch loader.
//!
//! [`Loader::epoch`] runs a sample function on a rayon pool, one batch at a time in a
//! background thread, and hands finished batches through a bounded channel (the prefetch
//! queue) so the training loop only waits when decoding is slower than training.
//!
//! Determinism does not depend on threads or scheduling:
//! * the sample order of epoch `e` is a Fisher–Yates permutation drawn from a ChaCha8 stream
//!   seeded by `(seed, e)` ([`Loader::order`]);
//! * the sample at position `p` of epoch `e` gets its own ChaCha8 RNG seeded by
//!   `(seed, e, p)` ([`sample_rng`]);
//! * batch `k` holds positions `k·B .. (k+1)·B`, in order.
//!
//! So batch `k` of epoch `e` is the same whatever the thread count, and a resumed run can
//! start an epoch at batch `k` ([`Loader::epoch`]'s `start_batch`) and get exactly the batches
//! an uninterrupted run would have seen.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DatasetError, Result};

/// SplitMix64 finaliser: a good 64-bit mixer for deriving seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 256-bit ChaCha key from a list of words (domain tag first).
pub fn derive_seed(words: &[u64]) -> [u8; 32] {
    let mut state = 0x243F_6A88_85A3_08D3u64;
    for &w in words {
        state = mix(state ^ mix(w));
    }
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        state = mix(state.wrapping_add(i as u64));
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    key
}

const TAG_ORDER: u64 = 0x006f_7264_6572; // "order"
const TAG_SAMPLE: u64 = 0x7361_6d70_6c65; // "sample"

/// The augmentation RNG of the sample at `position` of `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, position: u64) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive_seed(&[TAG_SAMPLE, seed, epoch, position]))
}

/// Configuration and per-epoch schedule of a batch loader.
#[derive(Debug, Clone)]
pub struct Loader {
    len: usize,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    drop_last: bool,
    prefetch: usize,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// `(rank, ranks)`: serve only this rank's slice of every batch.
    shard: (usize, usize),
}

impl Loader {
    /// A loader over `len` samples. `prefetch_batches` is the queue depth (≥ 1).
    /// Samples are prepared on rayon's global pool unless [`Loader::with_threads`] is used.
    pub fn new(
        len: usize,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
        drop_last: bool,
        prefetch_batches: usize,
    ) -> Result<Self> {
        if batch_size == 0 || prefetch_batches == 0 {
            return Err(DatasetError::InvalidConfig(format!(
                "loader needs batch_size > 0 and prefetch_batches > 0 (got {batch_size}, {prefetch_batches})"
            )));
        }
        Ok(Loader {
            len,
            batch_size,
            seed,
            shuffle,
            drop_last,
            prefetch: prefetch_batches,
            pool: None,
            shard: (0, 1),
        })
    }

    /// Serves only the slice `rank` of `ranks` equal, contiguous slices of every batch (data
    /// parallel across processes): the batch positions, their order, their samples and their
    /// random streams are those of the unsharded loader, so the union over ranks of step `s` is
    /// exactly its unsharded batch `s`. The batch size must split evenly and batches must be
    /// whole (`drop_last`).
    pub fn with_shard(mut self, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks || !self.batch_size.is_multiple_of(ranks) || !self.drop_last
        {
            return Err(DatasetError::InvalidConfig(format!(
                "cannot shard batches of {} into {ranks} equal slices for rank {rank} (drop_last: {})",
                self.batch_size, self.drop_last
            )));
        }
        self.shard = (rank, ranks);
        Ok(self)
    }

    /// Prepares samples on a dedicated pool of `threads` workers (keeps the loader off the
    /// global pool that the training step may use).
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(DatasetError::InvalidConfig(
                "loader threads must be > 0".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cae-loader-{i}"))
            .build()
            .map_err(|e| {
                DatasetError::InvalidConfig(format!("cannot start {threads} loader threads: {e}"))
            })?;
        self.pool = Some(Arc::new(pool));
        Ok(self)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch (the last partial batch counts unless `drop_last`).
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.len / self.batch_size
        } else {
            self.len.div_ceil(self.batch_size)
        }
    }

    /// The sample indices of `epoch` in the order they are served.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::from_seed(derive_seed(&[TAG_ORDER, self.seed, epoch]));
            for i in (1..order.len()).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
        }
        order
    }

    /// The batches of `epoch` from batch `start_batch` on.
    ///
    /// `f(sample_index, rng)` makes one item; it runs in parallel. Each batch is a `Vec` in
    /// position order. If a sample fails, that batch is `Err` with the error of its first
    /// failing position, and the epoch ends there. A panic in `f` is re-raised in the
    /// consumer. Dropping the iterator stops the background work.
    pub fn epoch<T, E, F>(&self, epoch: u64, start_batch: usize, f: F) -> Batches<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: Fn(usize, &mut ChaCha8Rng) -> std::result::Result<T, E> + Send + Sync + 'static,
    {
        let n_batches = self.batches_per_epoch();
        let start = start_batch.min(n_batches);
        let order = self.order(epoch);
        let (tx, rx) = bounded(self.prefetch);
        let (seed, bs, len) = (self.seed, self.batch_size, self.len);
        let (rank, ranks) = self.shard;
        let pool = self.pool.clone();
        let handle = std::thread::Builder::new()
            .name("cae-loader".into())
            .spawn(move || {
                for b in start..n_batches {
                    let slice = bs / ranks;
                    let first = b * bs + rank * slice;
                    let last = if ranks == 1 {
                        ((b + 1) * bs).min(len)
                    } else {
                        first + slice
                    };
                    let positions: Vec<usize> = (first..last).collect();
                    let make = || {
                        positions
                            .par_iter()
                            .map(|&p| {
                                let mut rng = sample_rng(seed, epoch, p as u64);
                                f(order[p], &mut rng)
                            })
                            .collect::<Vec<_>>()
                    };
                    let items = match &pool {
                        Some(pool) => pool.install(make),
                        None => make(),
                    };
                    let batch: std::result::Result<Vec<T>, E> = items.into_iter().collect();
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the loader thread");
        Batches {
            rx: Some(rx),
            handle: Some(handle),
            remaining: n_batches - start,
        }
    }
}

/// The batches of one epoch, produced in the background. See [`Loader::epoch`].
pub struct Batches<T, E> {
    rx: Option<Receiver<std::result::Result<Vec<T>, E>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl<T, E> Iterator for Batches<T, E> {
    type Item = std::result::Result<Vec<T>, E>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(batch) => {
                self.remaining = if batch.is_err() {
                    0
                } else {
                    self.remaining - 1
                };
                Some(batch)
            }
            Err(_) => {
                // The producer stopped early: only a panic in the sample function does that.
                self.remaining = 0;
                if let Some(h) = self.handle.take()
                    && let Err(panic) = h.join()
                {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<T, E> Drop for Batches<T, E> {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, so it stops after the
        // batch in progress.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize, rng: &mut ChaCha8Rng) -> std::result::Result<(usize, u64), String> {
        Ok((i, rng.random()))
    }

    fn collect(l: &Loader, epoch: u64, start: usize) -> Vec<Vec<(usize, u64)>> {
        l.epoch(epoch, start, item).map(|b| b.unwrap()).collect()
    }

    #[test]
    fn shards_of_a_batch_are_its_slices_with_their_own_streams() {
        let full = Loader::new(50, 8, 3, true, true, 2).unwrap();
        let whole = collect(&full, 1, 2);
        let parts: Vec<Vec<Vec<(usize, u64)>>> = (0..2)
            .map(|r| collect(&full.clone().with_shard(r, 2).unwrap(), 1, 2))
            .collect();
        assert_eq!(whole.len(), parts[0].len());
        for (b, batch) in whole.iter().enumerate() {
            let joined: Vec<(usize, u64)> =
                parts[0][b].iter().chain(&parts[1][b]).copied().collect();
            assert_eq!(*batch, joined, "batch {b}");
        }
        assert!(
            full.clone().with_shard(0, 3).is_err(),
            "8 does not split into 3"
        );
        assert!(full.clone().with_shard(2, 2).is_err(), "rank out of range");
        let partial = Loader::new(50, 8, 3, true, false, 2).unwrap();
        assert!(
            partial.with_shard(0, 2).is_err(),
            "a partial last batch cannot be sharded"
        );
    }

    #[test]
    fn order_is_a_seeded_permutation() {
        let l = Loader::new(100, 8, 7, true, false, 2).unwrap();
        let a = l.order(0);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, l.order(0));
        assert_ne!(a, l.order(1));
        let unshuffled = Loader::new(5, 2, 7, false, false, 1).unwrap();
        assert_eq!(unshuffled.order(3), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn batch_counts_and_drop_last() {
        let l = Loader::new(10, 4, 0, true, false, 1).unwrap();
        let b = collect(&l, 0, 0);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let l = Loader::new(10, 4, 0, true, true, 1).unwrap();
        assert_eq!(collect(&l, 0, 0).len(), 2);
        assert_eq!(l.batches_per_epoch(), 2);
    }

    #[test]
    fn same_batches_for_any_thread_count_and_mid_epoch_restart() {
        let base = Loader::new(37, 5, 42, true, false, 3).unwrap();
        let one = collect(&base.clone().with_threads(1).unwrap(), 2, 0);
        let three = collect(&base.clone().with_threads(3).unwrap(), 2, 0);
        let global = collect(&base, 2, 0);
        assert_eq!(one, three);
        assert_eq!(one, global);
        let resumed = collect(&base.clone().with_threads(2).unwrap(), 2, 4);
        assert_eq!(resumed, one[4..].to_vec());
        assert!(collect(&base, 2, 100).is_empty());
        assert_ne!(collect(&base, 3, 0), one);
    }

    #[test]
    fn first_error_in_position_order_ends_the_epoch() {
        let l = Loader::new(20, 4, 1, false, false, 1)
            .unwrap()
            .with_threads(4)
            .unwrap();
        let out: Vec<_> = l
            .epoch(0, 0, |i, _rng| {
                if i == 5 || i == 6 {
                    Err(format!("bad {i}"))
                } else {
                    Ok(i)
                }
            })
            .collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Ok(vec![0, 1, 2, 3]));
        assert_eq!(out[1], Err("bad 5".to_string()));
    }

    #[test]
    fn dropping_early_stops_the_producer() {
        let l = Loader::new(1000, 10, 1, true, false, 1).unwrap();
        let mut it = l.epoch(0, 0, |i, _rng| Ok::<_, ()>(i));
        assert!(it.next().is_some());
        drop(it); // must not hang
    }

    #[test]
    #[should_panic(expected = "sample function panicked")]
    fn panics_reach_the_consumer() {
        let l = Loader::new(8, 4, 1, false, false, 1).unwrap();
        let out: Vec<_> = l
            .epoch(0, 0, |i, _rng| {
                if i == 5 {
                    panic!("sample function panicked");
                }
                Ok::<_, ()>(i)
            })
            .collect();
        drop(out);
    }

    #[test]
    fn invalid_config() {
        assert!(Loader::new(10, 0, 0, true, false, 1).is_err());
        assert!(Loader::new(10, 1, 0, true, false, 0).is_err());
        assert!(
            Loader::new(10, 1, 0, true, false, 1)
                .unwrap()
                .with_threads(0)
                .is_err()
        );
    }
}
