//! Golden frames: the exact bytes SPEC.md lists, checked against the Rust encoder, the decoder
//! and an independent Python encoder written from SPEC.md.

mod samples;

use spatialbot_link::*;

/// (message, frame as hex). Keep in sync with the table in SPEC.md (a test checks that too).
const GOLDEN: &[(&str, &str)] = &[
    ("Hello", "02010701f8acd1910120010203040506070ad7a3bc0ad7a3bc0ad7a3bccdccccbdcdccccbdcdccccbd01010101010101190ad7a33c0ad7a33c0ad7a33ccdcccc3dcdcccc3dcdcccc3d0103803f011b803f0ad7233c0ad7233c0ad7233ccdcc4c3dcdcc4c3dcdcc4c3d0101023f0108803f6475361ceb00"),
    ("Action", "140101010702c0843df9e43d0ad7233c0ad7a3bc01010105cdcc4c3d01010105cdccccbd0103803f01010105f145431300"),
    ("Heartbeat", "0b010203e0a03e6aff6fd400"),
    ("Stop", "040103040524c3d2ff00"),
    ("HelloAck", "0e010401f8acd1910101ace17c9300"),
    ("Ack", "030105020105de1f87d500"),
    ("Status", "0501060101010c80897a0ad7233c0ad7a3bc01010105cdcc4c3d01010105cdccccbd0107803f35040d3200"),
    ("Fault", "03010706016a9eb0eb00"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn encoder_writes_the_golden_bytes() {
    let samples = samples::samples();
    assert_eq!(samples.len(), GOLDEN.len());
    for ((name, m), (gname, ghex)) in samples.iter().zip(GOLDEN) {
        assert_eq!(name, gname);
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(m, &mut buf).unwrap();
        assert_eq!(hex(&buf[..n]), *ghex, "{name}");
    }
}

#[test]
fn decoder_reads_the_golden_bytes_back() {
    let mut stream = Vec::new();
    for (_, h) in GOLDEN {
        stream.extend(unhex(h));
    }
    let mut d = Decoder::new();
    let mut got = Vec::new();
    d.feed(&stream, |r| got.push(r.unwrap()));
    let want: Vec<Message> = samples::samples().into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, want);
    assert_eq!(d.counters().bad_frames, 0);
}

#[test]
fn spec_md_lists_the_golden_bytes() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).unwrap();
    let spaced = |h: &str| {
        (0..h.len())
            .step_by(2)
            .map(|i| &h[i..i + 2])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let flat: String = spec.split_whitespace().collect::<Vec<_>>().join(" ");
    for (name, h) in GOLDEN {
        assert!(
            flat.contains(&spaced(h)),
            "SPEC.md does not list the golden frame of {name}"
        );
    }
}

#[test]
fn independent_python_encoder_agrees() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference_frames.py");
    let out = match std::process::Command::new("python3").arg(script).output() {
        Ok(o) if o.status.success() => o,
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 is required under CI: {other:?}"
            );
            eprintln!("SKIPPED: python3 not available to run {script}");
            return;
        }
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    assert_eq!(lines.len(), GOLDEN.len());
    for ((n, h), (gn, gh)) in lines.iter().zip(GOLDEN) {
        assert_eq!((n.as_str(), h.as_str()), (*gn, *gh));
    }
}

#[test]
fn crc_matches_the_check_value() {
    // CRC-32/ISO-HDLC check value of "123456789".
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn a_long_run_without_zeros_uses_the_255_code() {
    let src: Vec<u8> = (1..=255u8).chain(1..=10).collect();
    let mut enc = [0u8; 300];
    let n = cobs_encode(&src, &mut enc).unwrap();
    assert_eq!(enc[0], 0xFF);
    assert!(!enc[..n].contains(&0));
    let mut dec = [0u8; 300];
    let m = cobs_decode(&enc[..n], &mut dec).unwrap();
    assert_eq!(&dec[..m], &src[..]);
}

/// SPEC.md §2's COBS at its edges, where the `cobs` crate alone writes other bytes (the empty
/// input; a last zero-free run of whole 254-byte blocks): the exact bytes, the round trip, and
/// `BufferTooSmall` (never a length past the buffer) for every shorter output buffer.
#[test]
fn cobs_edges_follow_the_spec() {
    let run = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 255 + 1) as u8).collect() };
    let cat = |parts: &[&[u8]]| -> Vec<u8> { parts.concat() };
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (vec![], vec![0x01]),
        (vec![0], vec![0x01, 0x01]),
        (vec![0, 0], vec![0x01, 0x01, 0x01]),
        (vec![7], vec![0x02, 7]),
        (vec![7, 0], vec![0x02, 7, 0x01]),
        (run(253), cat(&[&[0xFE], &run(253)])),
        (run(254), cat(&[&[0xFF], &run(254), &[0x01]])),
        (
            cat(&[&run(254), &[0]]),
            cat(&[&[0xFF], &run(254), &[0x01, 0x01]]),
        ),
        (
            cat(&[&[0], &run(254)]),
            cat(&[&[0x01, 0xFF], &run(254), &[0x01]]),
        ),
        (run(255), cat(&[&[0xFF], &run(254), &[0x02, 0xFF]])),
        (
            run(508),
            cat(&[&[0xFF], &run(254), &[0xFF], &run(508)[254..], &[0x01]]),
        ),
    ];
    for (src, want) in &cases {
        let mut enc = vec![0u8; want.len()];
        let n = cobs_encode(src, &mut enc).unwrap();
        assert_eq!(hex(&enc[..n]), hex(want), "input of {} bytes", src.len());
        let mut dec = vec![0u8; src.len()];
        assert_eq!(cobs_decode(want, &mut dec), Some(src.len()));
        assert_eq!(&dec, src);
        for short in 0..want.len() {
            let mut enc = vec![0u8; short];
            assert_eq!(
                cobs_encode(src, &mut enc),
                Err(EncodeError::BufferTooSmall),
                "input of {} bytes into {short}",
                src.len()
            );
        }
        if !src.is_empty() {
            let mut dec = vec![0u8; src.len() - 1];
            assert_eq!(cobs_decode(want, &mut dec), None);
        }
    }
}

/// What is not COBS: a zero byte anywhere (the delimiter never reaches the decoder), a code
/// pointing past the end. The empty input decodes to nothing (`decode_frame` then reports it
/// too short).
#[test]
fn cobs_decode_rejects_zeros_and_overruns() {
    let mut dec = [0u8; 16];
    assert_eq!(cobs_decode(&[], &mut dec), Some(0));
    assert_eq!(cobs_decode(&[0x01, 0x00], &mut dec), None);
    assert_eq!(cobs_decode(&[0x01, 0x00, 0x01], &mut dec), None);
    assert_eq!(cobs_decode(&[0x03, 0x05, 0x00], &mut dec), None);
    assert_eq!(cobs_decode(&[0x00], &mut dec), None);
    assert_eq!(cobs_decode(&[0x03, 0x05], &mut dec), None);
    assert_eq!(cobs_decode(&[0x02, 0x05, 0x03, 0x06], &mut dec), None);
    assert_eq!(cobs_decode(&[0x02, 0x05, 0x02, 0x06], &mut dec), Some(3));
    assert_eq!(&dec[..3], &[0x05, 0x00, 0x06]);
    assert_eq!(decode_frame(&[]), Err(FrameError::TooShort));
    assert_eq!(decode_frame(&[0x01, 0x00]), Err(FrameError::Cobs));
}

/// CRC32 against Python's zlib and COBS against the SPEC.md-written encoder, on random buffers.
#[test]
fn crc_and_cobs_match_python_on_random_buffers() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference_frames.py");
    let py = format!(
        "import sys, zlib, importlib.util\n\
         spec = importlib.util.spec_from_file_location('ref', '{script}')\n\
         import io, contextlib\n\
         ref = importlib.util.module_from_spec(spec)\n\
         with contextlib.redirect_stdout(io.StringIO()): spec.loader.exec_module(ref)\n\
         for line in sys.stdin:\n\
         \x20   b = bytes.fromhex(line.strip())\n\
         \x20   print('%08x %s' % (zlib.crc32(b) & 0xffffffff, ref.cobs(b).hex()))\n"
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let buffers: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let len = (next() % 600) as usize;
            // Every third buffer is mostly zeros, to exercise short COBS blocks.
            (0..len)
                .map(|_| {
                    if i % 3 == 0 && next() % 4 != 0 {
                        0
                    } else {
                        next() as u8
                    }
                })
                .collect()
        })
        .collect();
    let input: String = buffers.iter().map(|b| hex(b) + "\n").collect();
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&py)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is required under CI"
        );
        eprintln!("SKIPPED: python3 not available");
        return;
    };
    use std::io::Write;
    // Feed stdin from a thread: Python answers line by line and would fill stdout meanwhile.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), buffers.len());
    for (b, line) in buffers.iter().zip(lines) {
        let (crc, cobs) = line.split_once(' ').unwrap();
        assert_eq!(format!("{:08x}", crc32(b)), crc);
        let mut enc = vec![0u8; b.len() + b.len() / 254 + 2];
        let n = cobs_encode(b, &mut enc).unwrap();
        assert_eq!(hex(&enc[..n]), cobs);
        let mut dec = vec![0u8; b.len() + 1];
        let m = cobs_decode(&enc[..n], &mut dec).unwrap();
        assert_eq!(&dec[..m], &b[..]);
    }
}
