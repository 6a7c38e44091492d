//! Any bytes in any chunking: the decoder must not panic, and whatever it accepts must encode
//! back to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spatialbot_link::{decode_frame, encode, Decoder, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk % 64) + 1;
    let mut decoder = Decoder::new();
    for piece in rest.chunks(chunk) {
        decoder.feed(piece, |r| {
            if let Ok(m) = r {
                let mut buf = [0u8; MAX_FRAME];
                let n = encode(&m, &mut buf).expect("a decoded message always fits a frame");
                let again = decode_frame(&buf[..n - 1]).expect("an encoded frame decodes");
                let mut buf2 = [0u8; MAX_FRAME];
                let n2 = encode(&again, &mut buf2).expect("re-encode");
                assert_eq!(&buf[..n], &buf2[..n2]);
            }
        });
    }
    let c = decoder.counters();
    assert!(c.recovered <= c.frames);
});
