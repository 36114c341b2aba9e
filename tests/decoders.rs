//! Objects decode with independent, standard implementations, not only with
//! streamlab's own reader: gzip(1), unzip(1), snappy-java (via Java) for
//! `Snappy`, and python-snappy's Hadoop stream reader for `HADOOP_SNAPPY`.
//!
//! The decoders are installed by `.ci/run` (`just install-decoders`). Where one
//! is missing the test fails under CI and says what to install elsewhere.

use std::path::Path;
use std::process::Command;

use streamlab::delivery::encode::compress;
use streamlab::spec::Compression;

/// Realistic content, large enough to span several snappy blocks.
fn records() -> Vec<u8> {
    let config = streamlab::events::GeneratorConfig::new(11, 1_783_951_200_000);
    streamlab::events::EventGenerator::new(&config)
        .take(3_000)
        .flat_map(|e| {
            let mut line = e.to_json();
            line.push(b'\n');
            line
        })
        .collect()
}

/// Runs `program args... FILE` on the encoded body and returns its stdout,
/// or `None` (with a note) when the decoder is not installed outside CI.
fn decode_with(body: &[u8], program: &str, args: &[&str], install: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object");
    std::fs::write(&file, body).unwrap();
    let output = Command::new(program).args(args).arg(&file).output();
    match output {
        Ok(out) if out.status.success() => Some(out.stdout),
        Ok(out) => panic!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("not checked: {program} is not available ({e}); install it with: {install}");
            None
        }
        Err(e) => panic!("{program} is required under CI ({e}); install it with: {install}"),
    }
}

fn check(compression: Compression, program: &str, args: &[&str], install: &str) {
    let raw = records();
    let body = compress(raw.clone(), compression, "0f8fad5b-d9cb-469f-a165-70867728950e");
    assert_ne!(&body[..], &raw[..], "{compression:?} must change the bytes");
    if let Some(decoded) = decode_with(&body, program, args, install) {
        assert_eq!(decoded.len(), raw.len(), "{compression:?} via {program}");
        assert!(decoded == raw, "{compression:?} via {program}: content differs");
    }
}

#[test]
fn gzip_decodes_with_gzip() {
    check(Compression::Gzip, "gzip", &["-dc"], "apt-get install gzip");
}

#[test]
fn zip_decodes_with_unzip_and_has_one_uuid_named_entry() {
    check(Compression::Zip, "unzip", &["-p"], "apt-get install unzip");
    let body = compress(b"x".to_vec(), Compression::Zip, "0f8fad5b-d9cb-469f-a165-70867728950e");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.zip");
    std::fs::write(&file, &body).unwrap();
    if let Ok(out) = Command::new("unzip").arg("-Z1").arg(&file).output() {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0f8fad5b-d9cb-469f-a165-70867728950e");
    }
}

#[test]
fn snappy_decodes_with_snappy_java() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decoders/XerialDecode.java");
    let jar = "/usr/share/java/snappy-java.jar";
    let install = "apt-get install default-jre-headless libsnappy-java";
    if !Path::new(jar).exists() {
        assert!(std::env::var_os("CI").is_none(), "{jar} is required under CI; install it with: {install}");
        eprintln!("not checked: {jar} missing; install it with: {install}");
        return;
    }
    check(Compression::Snappy, "java", &["-cp", jar, source.to_str().unwrap()], install);
}

#[test]
fn hadoop_snappy_decodes_with_python_snappy() {
    let script = "import sys, snappy\nd = snappy.HadoopStreamDecompressor()\nsys.stdout.buffer.write(d.decompress(open(sys.argv[1], 'rb').read()))";
    let install = "pip install python-snappy==0.7.3";
    let probe = Command::new("python3").args(["-c", "import snappy; snappy.HadoopStreamDecompressor"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "python-snappy is required under CI; install it with: {install}");
        eprintln!("not checked: python-snappy missing; install it with: {install}");
        return;
    }
    check(Compression::HadoopSnappy, "python3", &["-c", script], install);
}
