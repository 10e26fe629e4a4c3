//! Decoding allocates nothing per token: every buffer comes back from the
//! workspace. Measured with a counting allocator (this test binary only) that
//! counts the threads running the decoding, not the test harness's own
//! (whose bookkeeping can land inside a measured window).

use gpt::model::{Gpt, GptConfig, Init};
use gpt::sample::{generate, GenerateOptions, SampleOptions};
use gpt::tensor::rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the threads whose allocations count.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_for(model: &Gpt, new_tokens: usize, sampling: SampleOptions) -> usize {
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: new_tokens,
        stop: Vec::new(),
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let out = generate(model, &[vec![1, 2, 3]], &opts, &mut [rng(0)], |_, _| true).unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(out.tokens[0].len(), new_tokens);
    after - before
}

#[test]
fn each_decoded_token_allocates_nothing() {
    // One pool thread, counted, as is this test's own thread.
    COUNTED.with(|c| c.set(true));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .start_handler(|_| COUNTED.with(|c| c.set(true)))
        .build()
        .unwrap();
    pool.install(|| {
        let gpt2 = GptConfig::gpt2(64, 64, 32, 4, 2);
        let llama = GptConfig {
            n_kv_head: 2, // grouped-query attention, rotary embeddings
            ..GptConfig::llama(64, 64, 32, 4, 2, 48)
        };
        for (config, sampling) in [
            (gpt2.clone(), SampleOptions::GREEDY),
            (
                gpt2,
                SampleOptions {
                    temperature: 0.9,
                    top_k: Some(10),
                    top_p: Some(0.9),
                },
            ),
            (llama, SampleOptions::GREEDY),
        ] {
            let model = Gpt::new(config, Init::Gpt2, &mut rng(0));
            let short = allocations_for(&model, 10, sampling);
            let long = allocations_for(&model, 40, sampling);
            // The output vector grows by doubling: a few reallocations, not one per token.
            assert!(
                long - short <= 3,
                "30 more tokens cost {} more allocations ({short} vs {long})",
                long - short
            );
        }
    });
}
