//! Data-parallel training across processes: what the trainer needs from its
//! peers. [`Single`] (one process, nothing to talk to) is always built; with
//! `--features mpi`, a run started by `mpirun -np N` talks over MPI.
//!
//! The flat parameter vector is every tensor end to end, in `Params` order;
//! ZeRO-1 gives rank `r` of `n` the slice [`shard`]`(len, r, n)` of it.

use anyhow::{bail, Result};
use std::ops::Range;

/// The collectives a data-parallel run needs. Every rank calls each one in
/// the same order; a call returns once every rank has made it.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Sums `buf` element-wise over the ranks, in place on every rank.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// The same in f64: losses, target counts and flags, summed exactly.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]);
    /// Every rank's `mine` (all of one length) end to end in rank order: `out.len() == size * mine.len()`.
    fn all_gather(&self, mine: &[f32], out: &mut [f32]);
    /// Every rank's `mine`, in rank order.
    fn all_gather_u64(&self, mine: u64) -> Vec<u64>;
    /// Rank `owner`'s `buf` (not rank 0) reaches rank 0's `buf`, of the same
    /// length; the other ranks' `buf`s are left alone.
    fn send_to_root(&self, owner: usize, buf: &mut [f32]);
    /// Ends every rank's process with `code`: a rank failed on its own and the others would wait for it forever.
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) {}
    fn all_reduce_sum_f64(&self, _: &mut [f64]) {}
    fn all_gather(&self, mine: &[f32], out: &mut [f32]) {
        out.copy_from_slice(mine);
    }
    fn all_gather_u64(&self, mine: u64) -> Vec<u64> {
        vec![mine]
    }
    fn send_to_root(&self, _: usize, _: &mut [f32]) {
        unreachable!("one process owns everything")
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// An error every rank raises alike at the same point (a NaN somewhere, a
/// mismatch between ranks): rank 0 reports it, the others end quietly.
#[derive(Debug)]
pub struct EveryRank(pub String);

impl std::fmt::Display for EveryRank {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EveryRank {}

/// Processes the launcher started (`mpirun -np N`), from its environment: 1 outside one.
pub fn launched_ranks() -> usize {
    env_count(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]).unwrap_or(1)
}

/// Processes the launcher started on this machine: they share its cores.
pub fn local_ranks() -> usize {
    env_count(&["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]).unwrap_or(1)
}

/// Threads for each of several ranks on this machine: its cores shared out
/// (`None` for a process alone on it).
pub fn threads_per_rank() -> Option<usize> {
    let local = local_ranks();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (local > 1).then(|| (cores / local).max(1))
}

fn env_count(names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok()?.parse().ok())
        .filter(|&n| n >= 1)
}

/// The peers of this process: MPI's world under a launcher that started
/// several, else [`Single`]. Without the `mpi` feature, several processes
/// would each train a copy of the model: that is refused.
pub fn init() -> Result<Box<dyn Comm>> {
    if launched_ranks() == 1 {
        return Ok(Box::new(Single));
    }
    start_mpi()
}

#[cfg(feature = "mpi")]
fn start_mpi() -> Result<Box<dyn Comm>> {
    Ok(Box::new(mpi::Mpi::init()?))
}

#[cfg(not(feature = "mpi"))]
fn start_mpi() -> Result<Box<dyn Comm>> {
    bail!(
        "started as one of {} MPI processes, but this gpt was built without MPI: each would train its own copy. \
         Build it with `cargo build --release --features mpi` (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin libclang-dev), \
         or run it without mpirun",
        launched_ranks()
    )
}

/// Rank `rank`'s part of `0..len` split over `size` ranks: equal parts of
/// `ceil(len / size)`, the last ones shorter (or empty).
pub fn shard(len: usize, rank: usize, size: usize) -> Range<usize> {
    let part = len.div_ceil(size);
    (rank * part).min(len)..((rank + 1) * part).min(len)
}

/// Floats per all-reduce of the gradients: 4 MB buffers, large enough for the
/// network's full speed, small enough to stay in cache on the way in and out.
pub const BUCKET: usize = 1 << 20;

/// Sums `tensors` over the ranks in place, packed into buckets of up to
/// [`BUCKET`] floats (`buf` is reused between calls).
pub fn all_reduce_buckets(comm: &dyn Comm, tensors: &mut [Vec<f32>], buf: &mut Vec<f32>) {
    if comm.size() == 1 {
        return;
    }
    let mut pieces: Vec<&mut [f32]> = Vec::new();
    let mut flush = |pieces: &mut Vec<&mut [f32]>| {
        buf.clear();
        pieces.iter().for_each(|p| buf.extend_from_slice(p));
        comm.all_reduce_sum(buf);
        let mut at = 0;
        for p in pieces.drain(..) {
            p.copy_from_slice(&buf[at..at + p.len()]);
            at += p.len();
        }
    };
    let mut len = 0;
    for chunk in tensors.iter_mut().flat_map(|t| t.chunks_mut(BUCKET)) {
        if len + chunk.len() > BUCKET {
            flush(&mut pieces);
            len = 0;
        }
        len += chunk.len();
        pieces.push(chunk);
    }
    flush(&mut pieces);
}

/// The parts of `range` of the flat vector that `tensors` (end to end) hold:
/// `(tensor, range within it)` for each tensor it overlaps, in order.
pub fn overlaps(lens: impl IntoIterator<Item = usize>, range: Range<usize>) -> Vec<(usize, Range<usize>)> {
    let mut start = 0;
    let mut out = Vec::new();
    for (i, len) in lens.into_iter().enumerate() {
        let (a, b) = (range.start.max(start), range.end.min(start + len));
        if a < b {
            out.push((i, a - start..b - start));
        }
        start += len;
    }
    out
}

/// After each rank updated its shard of `tensors` (ZeRO-1): every rank gets
/// every shard, in rounds of [`BUCKET`] floats so that no rank holds a second
/// copy of the model. `buf` is reused between calls.
pub fn all_gather_shards(comm: &dyn Comm, tensors: &mut [&mut [f32]], buf: &mut Vec<f32>) {
    let (rank, size) = (comm.rank(), comm.size());
    if size == 1 {
        return;
    }
    let len: usize = tensors.iter().map(|t| t.len()).sum();
    let part = len.div_ceil(size);
    // Each round, every rank sends the next `chunk` floats of its shard.
    let chunk = (BUCKET / size).max(1);
    let piece = |r: usize, round: usize| {
        let start = (r * part + round * chunk).min(len);
        start..(start + chunk).min((r + 1) * part).min(len)
    };
    let mut mine = Vec::with_capacity(chunk);
    buf.resize(chunk * size, 0.0);
    for round in 0..part.div_ceil(chunk) {
        mine.clear();
        read_flat(tensors, piece(rank, round), &mut mine);
        mine.resize(chunk, 0.0);
        comm.all_gather(&mine, buf);
        for (r, theirs) in buf.chunks(chunk).enumerate() {
            write_flat(tensors, piece(r, round), theirs);
        }
    }
}

/// Appends `range` of the flat vector that `tensors` hold end to end to `out`.
fn read_flat(tensors: &[&mut [f32]], range: Range<usize>, out: &mut Vec<f32>) {
    for (i, r) in overlaps(tensors.iter().map(|t| t.len()), range) {
        out.extend_from_slice(&tensors[i][r]);
    }
}

/// Writes `range` of the flat vector that `tensors` hold end to end from the front of `from`.
fn write_flat(tensors: &mut [&mut [f32]], range: Range<usize>, from: &[f32]) {
    let mut at = 0;
    for (i, r) in overlaps(tensors.iter().map(|t| t.len()), range) {
        tensors[i][r.clone()].copy_from_slice(&from[at..at + r.len()]);
        at += r.len();
    }
}

/// Refuses to train unless every rank has the same `(what, fingerprint)`s:
/// ranks with another binary, other flags or other data would drift apart.
pub fn check_same_everywhere(comm: &dyn Comm, items: &[(&str, u64)]) -> Result<()> {
    for (what, mine) in items {
        let all = comm.all_gather_u64(*mine);
        let odd: Vec<String> = (0..all.len())
            .filter(|&r| all[r] != all[0])
            .map(|r| r.to_string())
            .collect();
        if !odd.is_empty() {
            bail!(EveryRank(format!(
                "rank {} has other {what} than rank 0: every rank must run the same gpt with the same flags on the same data",
                odd.join(", ")
            )));
        }
    }
    Ok(())
}

/// A stand-in for MPI in tests.
#[cfg(test)]
pub mod testing {
    use super::Comm;

    /// Ranks as threads of this process: each collective swaps every rank's
    /// values through shared slots between two barriers.
    pub struct ThreadRanks {
        rank: usize,
        shared: std::sync::Arc<(std::sync::Barrier, std::sync::Mutex<Vec<Vec<f64>>>)>,
    }

    impl ThreadRanks {
        pub fn new(size: usize) -> Vec<ThreadRanks> {
            let slots = std::sync::Mutex::new(vec![Vec::new(); size]);
            let shared = std::sync::Arc::new((std::sync::Barrier::new(size), slots));
            (0..size)
                .map(|rank| ThreadRanks {
                    rank,
                    shared: shared.clone(),
                })
                .collect()
        }

        /// Every rank's `mine`, in rank order.
        fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
            let (barrier, slots) = &*self.shared;
            slots.lock().unwrap()[self.rank] = mine;
            barrier.wait();
            let all = slots.lock().unwrap().clone();
            barrier.wait();
            all
        }
    }

    impl Comm for ThreadRanks {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.shared.1.lock().unwrap().len()
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) {
            let all = self.exchange(buf.iter().map(|&x| x as f64).collect());
            for (i, x) in buf.iter_mut().enumerate() {
                *x = all.iter().map(|r| r[i] as f32).sum();
            }
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
            let all = self.exchange(buf.to_vec());
            for (i, x) in buf.iter_mut().enumerate() {
                *x = all.iter().map(|r| r[i]).sum();
            }
        }
        fn all_gather(&self, mine: &[f32], out: &mut [f32]) {
            let all = self.exchange(mine.iter().map(|&x| x as f64).collect());
            out.iter_mut().zip(all.concat()).for_each(|(o, x)| *o = x as f32);
        }
        fn all_gather_u64(&self, mine: u64) -> Vec<u64> {
            self.exchange(vec![mine as f64]).iter().map(|r| r[0] as u64).collect()
        }
        fn send_to_root(&self, owner: usize, buf: &mut [f32]) {
            let all = self.exchange(buf.iter().map(|&x| x as f64).collect());
            if self.rank == 0 {
                buf.iter_mut().zip(&all[owner]).for_each(|(o, &x)| *o = x as f32);
            }
        }
        fn abort(&self, _: i32) -> ! {
            panic!("a rank aborted")
        }
    }
}

#[cfg(feature = "mpi")]
mod mpi {
    use super::Comm;
    use ::mpi::collective::SystemOperation;
    use ::mpi::environment::Universe;
    use ::mpi::topology::SimpleCommunicator;
    use ::mpi::traits::*;
    use anyhow::{Context, Result};
    use std::cell::RefCell;

    /// MPI's world; finalized when dropped.
    pub struct Mpi {
        world: SimpleCommunicator,
        /// The send side of in-place all-reduces.
        scratch: RefCell<Vec<f32>>,
        // Dropped last: it finalizes MPI.
        _universe: Universe,
    }

    impl Mpi {
        pub fn init() -> Result<Mpi> {
            let universe = ::mpi::initialize().context("MPI is already initialized")?;
            Ok(Mpi {
                world: universe.world(),
                scratch: RefCell::new(Vec::new()),
                _universe: universe,
            })
        }
    }

    impl Comm for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) {
            let mut send = self.scratch.borrow_mut();
            send.clear();
            send.extend_from_slice(buf);
            self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) {
            let send = buf.to_vec();
            self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn all_gather(&self, mine: &[f32], out: &mut [f32]) {
            self.world.all_gather_into(mine, out);
        }
        fn all_gather_u64(&self, mine: u64) -> Vec<u64> {
            let mut out = vec![0u64; self.size()];
            self.world.all_gather_into(&mine, &mut out[..]);
            out
        }
        fn send_to_root(&self, owner: usize, buf: &mut [f32]) {
            if self.rank() == owner {
                self.world.process_at_rank(0).send(&buf[..]);
            } else if self.rank() == 0 {
                self.world.process_at_rank(owner as i32).receive_into(buf);
            }
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_vector_once_in_order() {
        for (len, size) in [(10, 3), (9, 3), (2, 4), (0, 2), (7, 1)] {
            let parts: Vec<Range<usize>> = (0..size).map(|r| shard(len, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, len, "{len} over {size}");
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(parts.iter().all(|p| p.len() <= len.div_ceil(size)));
        }
        assert_eq!(shard(10, 2, 3), 8..10);
        assert_eq!(shard(2, 3, 4), 2..2);
    }

    #[test]
    fn overlaps_cut_a_range_at_tensor_boundaries() {
        assert_eq!(overlaps([3, 4, 2], 2..8), vec![(0, 2..3), (1, 0..4), (2, 0..1)]);
        assert_eq!(overlaps([3, 4, 2], 3..7), vec![(1, 0..4)]);
        assert_eq!(overlaps([3, 0, 2], 0..9), vec![(0, 0..3), (2, 0..2)]);
    }

    /// Two ranks where the other holds the same values: sums double. Counts
    /// the floats of each all-reduce.
    struct Twin(std::cell::RefCell<Vec<usize>>);

    impl Comm for Twin {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) {
            self.0.borrow_mut().push(buf.len());
            buf.iter_mut().for_each(|x| *x *= 2.0);
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) {}
        fn all_gather(&self, mine: &[f32], out: &mut [f32]) {
            out[..mine.len()].copy_from_slice(mine);
            out[mine.len()..].copy_from_slice(mine);
        }
        fn all_gather_u64(&self, mine: u64) -> Vec<u64> {
            vec![mine; 2]
        }
        fn send_to_root(&self, _: usize, _: &mut [f32]) {}
        fn abort(&self, _: i32) -> ! {
            panic!("abort")
        }
    }

    #[test]
    fn buckets_split_large_tensors_and_pack_small_ones() {
        let lens = [BUCKET + 3, 5, BUCKET - 9, 1, 4];
        let mut t: Vec<Vec<f32>> = lens.iter().map(|&n| (0..n).map(|i| i as f32).collect()).collect();
        let twin = Twin(Default::default());
        all_reduce_buckets(&twin, &mut t, &mut Vec::new());
        for (t, &n) in t.iter().zip(&lens) {
            assert!(t.iter().enumerate().all(|(i, &x)| x == 2.0 * i as f32), "length {n}");
        }
        // The first tensor's first BUCKET floats; its tail of 3 with the next three tensors
        // (3 + 5 + BUCKET - 9 + 1 = BUCKET); the last, which would overflow that, alone.
        assert_eq!(*twin.0.borrow(), [BUCKET, BUCKET, 4]);
    }

    #[test]
    fn zero_shards_reach_every_rank_in_rounds_smaller_than_the_model() {
        let lens = [BUCKET + 7, 3, BUCKET / 2 + 1];
        let len: usize = lens.iter().sum();
        let gathered: Vec<(Vec<Vec<f32>>, usize)> = std::thread::scope(|s| {
            let ranks = testing::ThreadRanks::new(3).into_iter().map(|comm| {
                s.spawn(move || {
                    // This rank knows its shard only.
                    let mine = shard(len, comm.rank(), 3);
                    let mut at = 0;
                    let mut t: Vec<Vec<f32>> = lens
                        .iter()
                        .map(|&n| {
                            at += n;
                            (at - n..at)
                                .map(|i| if mine.contains(&i) { i as f32 } else { -1.0 })
                                .collect()
                        })
                        .collect();
                    let mut views: Vec<&mut [f32]> = t.iter_mut().map(|t| &mut t[..]).collect();
                    let mut buf = Vec::new();
                    all_gather_shards(&comm, &mut views, &mut buf);
                    (t, buf.len())
                })
            });
            ranks
                .collect::<Vec<_>>()
                .into_iter()
                .map(|r| r.join().unwrap())
                .collect()
        });
        for (t, buf) in gathered {
            let flat = t.concat();
            assert!(flat.iter().enumerate().all(|(i, &x)| x == i as f32));
            assert!(buf <= BUCKET, "a buffer of {buf} floats");
        }
    }

    #[test]
    fn one_process_keeps_its_gradients_and_parameters() {
        let mut t = vec![vec![1.0, 2.0], vec![3.0]];
        all_reduce_buckets(&Single, &mut t, &mut Vec::new());
        assert_eq!(t, [vec![1.0, 2.0], vec![3.0]]);
        let (mut a, mut b) = ([1.0f32, 2.0], [3.0f32]);
        all_gather_shards(&Single, &mut [&mut a, &mut b], &mut Vec::new());
        assert_eq!((a, b), ([1.0, 2.0], [3.0]));
        assert!(check_same_everywhere(&Single, &[("flags", 7)]).is_ok());
    }
}
