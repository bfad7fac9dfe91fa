//! Fuzz targets of this crate, run by `bkg_kernel::fuzzing` inside the normal test suite for a
//! bounded time (how, the budget and the knobs: that module's documentation).
//!
//! | test               | code under test                                                   |
//! |--------------------|-------------------------------------------------------------------|
//! | `pg_frontend`      | [`Framing`]'s message checks, then pgwire's frontend decoder       |

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
