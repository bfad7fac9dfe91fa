//! Fuzz targets run inside the normal test suite for a bounded time (no nightly, no cargo-fuzz).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `pg_frontend`      | [`Framing`]'s message checks, then pgwire's frontend decoder       |
//!
//! (The other targets: see `testdata/fuzz/README.txt`.)
//!
//! Each target runs every seed of `testdata/fuzz/<target>/` (and seeds the test builds), then
//! mutated inputs: bit flips, interesting bytes and integers, truncation, slice duplication,
//! random insertions, splicing of two inputs, and for text targets grammar tokens (quotes,
//! backslashes, commas, parentheses, dots, newlines, `::`, `%`, unicode). The mutations come
//! from a xorshift64 PRNG seeded with a constant, so a run is deterministic. A panic in the
//! code under test, or a failed check (output that is not proportional to its input, an
//! accepted token that is not validly signed, ...), fails the test with the input printed in
//! hex and escaped, the PRNG seed and the iteration; the input is also saved to
//! `$TMPDIR/bkg-fuzz-<target>-crash.<ext>`, and copying that file into `testdata/fuzz/<target>/`
//! replays it on every run. Which inputs are accepted is never asserted.
//!
//! Default budget per target: 20 000 inputs or 2 s, whichever comes first. Longer runs:
//!
//! ```text
//! BKG_FUZZ_SECS=60 cargo nextest run -p bkg-pgwire fuzz
//! ```
//!
//! `BKG_FUZZ_SECS` alone lifts the iteration cap; `BKG_FUZZ_ITERS` sets it, `BKG_FUZZ_SEED`
//! changes the PRNG seed (decimal or `0x` hex), and `BKG_FUZZ_VERBOSE=1` prints each input
//! before it runs (for aborts, such as a stack overflow, that no test can catch).

use bkg_kernel::fuzzing::{Budget, Spec, corpus, run};

use crate::frames::{Framing, check_sasl_initial};

// ---------------------------------------------------------------------------------------------
// pg_frontend

/// Reads `data` as a client's byte stream the way a connection does: through the checks of
/// [`Framing`], then pgwire's decoder on each message they let through, from the first
/// (untyped) message or from after the startup. Every checked message must decode without a
/// panic and consume exactly its own bytes; the password family's forms are coerced as the
/// authentication handlers coerce them (the SASL initial form only when its check passes).
fn pg_frontend(data: &[u8]) -> bool {
    use pgwire::messages::startup::PasswordMessageFamily as Pw;
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage as M};
    let mut accepted = false;
    for untyped_first in [true, false] {
        let mut framing = Framing::new((), bytes::BytesMut::from(data));
        framing.startup = untyped_first;
        let _ = framing.frame();
        let mut buf = framing.ready.split();
        let mut startup = untyped_first;
        while !buf.is_empty() {
            let offset = usize::from(!startup);
            let len = i32::from_be_bytes(buf[offset..offset + 4].try_into().unwrap()) as usize;
            let (before, frame) = (buf.len(), buf[..offset + len].to_vec());
            let mut ctx = DecodeContext::default();
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = startup;
            let msg = match M::decode(&mut buf, &ctx) {
                Ok(Some(m)) => m,
                Ok(None) => panic!("a checked message was incomplete to the decoder: {frame:02x?}"),
                Err(_) => break,
            };
            assert_eq!(before - buf.len(), offset + len, "the decoder read past its message: {frame:02x?}");
            accepted = true;
            match msg {
                M::Startup(_) => startup = false,
                M::CancelRequest(_) => break,
                M::PasswordMessageFamily(Pw::Raw(body)) => {
                    let sasl_initial_ok = check_sasl_initial(&body).is_ok();
                    let _ = Pw::Raw(body.clone()).into_password();
                    let _ = Pw::Raw(body.clone()).into_sasl_response();
                    if sasl_initial_ok {
                        let _ = Pw::Raw(body).into_sasl_initial_response();
                    }
                }
                _ => {}
            }
        }
    }
    accepted
}

#[test]
fn pg_frontend_messages() {
    let seeds = corpus("pg_frontend");
    let spec = Spec { name: "pg_frontend", ext: "bin", max_len: 4096, tokens: &[] };
    run(&spec, &Budget::from_env(), &seeds, &mut pg_frontend);
}
