//! The reference's rules and examples, errors with their line numbers,
//! byte soup that must never panic, and writer → parser round trips.

use std::borrow::Cow;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn one(line: &str) -> Point<'_> {
    let mut points = parse_batch(line.as_bytes(), Precision::Ms, &Limits::default())
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(points.len(), 1, "{line:?}");
    points.remove(0)
}

fn err(input: &str) -> LineError {
    match parse_batch(input.as_bytes(), Precision::Ms, &Limits::default()) {
        Ok(points) => panic!("{input:?} parsed as {points:?}"),
        Err(e) => e,
    }
}

fn tags(p: &Point) -> Vec<(String, String)> {
    p.tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field<'p>(p: &'p Point, key: &str) -> &'p FieldValue<'p> {
    &p.fields
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

#[test]
fn typical_line_borrows_everything() {
    let line = "weather,device=gw-1,site=a temp=21.5,humidity=40i 1764748800000000000";
    let p = parse_batch(line.as_bytes(), Precision::Ns, &Limits::default())
        .unwrap()
        .remove(0);
    assert_eq!(p.measurement, "weather");
    assert_eq!(
        tags(&p),
        [
            ("device".into(), "gw-1".into()),
            ("site".into(), "a".into())
        ]
    );
    assert_eq!(
        p.fields[0],
        (Cow::Borrowed("temp"), FieldValue::Float(21.5))
    );
    assert_eq!(
        p.fields[1],
        (Cow::Borrowed("humidity"), FieldValue::Integer(40))
    );
    assert_eq!(p.time_ms, Some(1_764_748_800_000));
    let borrowed = matches!(p.measurement, Cow::Borrowed(_))
        && p.tags
            .iter()
            .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))))
        && p.fields.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_)));
    assert!(
        borrowed,
        "nothing in a line without escapes is copied: {p:?}"
    );
}

/// A line, its measurement, its tags and its first field key.
type EscapeCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn escapes_follow_the_reference() {
    // (line, measurement, tags, field key) per the reference's table of
    // special characters.
    let cases: &[EscapeCase] = &[
        (r"my\ meas x=1", "my meas", &[], "x"),
        (r"my\,meas x=1", "my,meas", &[], "x"),
        // '=' needs no escape in a measurement; `\=` there stays as it is.
        (r"my=meas x=1", "my=meas", &[], "x"),
        (r"my\=meas x=1", r"my\=meas", &[], "x"),
        (r"m,tag\ key=v x=1", "m", &[("tag key", "v")], "x"),
        (r"m,tag\,key=v x=1", "m", &[("tag,key", "v")], "x"),
        (r"m,tag\=key=v x=1", "m", &[("tag=key", "v")], "x"),
        (r"m,k=tag\ value x=1", "m", &[("k", "tag value")], "x"),
        (r"m,k=tag\,value x=1", "m", &[("k", "tag,value")], "x"),
        (r"m,k=tag\=value x=1", "m", &[("k", "tag=value")], "x"),
        (r"m field\ key=1", "m", &[], "field key"),
        (r"m field\,key=1", "m", &[], "field,key"),
        (r"m field\=key=1", "m", &[], "field=key"),
        // Two backslashes are one; a backslash before anything else is
        // itself.
        (r"m\\ x=1", r"m\", &[], "x"),
        (r"m\\\ n x=1", r"m\ n", &[], "x"),
        (r"m\a x=1", r"m\a", &[], "x"),
        (r"m,k=v\  x=1", "m", &[("k", "v ")], "x"),
        (r"m,k=C:\path x=1", "m", &[("k", r"C:\path")], "x"),
        (r"m,k=a\\ x=1", "m", &[("k", r"a\")], "x"),
        // Unicode and emoji need no escape.
        (
            "h\u{00e9}llo,\u{1f4a9}=\u{00fc} x=1",
            "h\u{00e9}llo",
            &[("\u{1f4a9}", "\u{00fc}")],
            "x",
        ),
        // A quote in a measurement or key is an ordinary character.
        (r#""m",k="v" "f"=1"#, r#""m""#, &[("k", r#""v""#)], r#""f""#),
    ];
    for (line, measurement, want_tags, key) in cases {
        let p = one(line);
        assert_eq!(p.measurement, *measurement, "{line}");
        let want: Vec<(String, String)> = want_tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(tags(&p), want, "{line}");
        assert_eq!(p.fields[0].0, *key, "{line}");
    }
}

#[test]
fn string_values_unescape_quotes_and_backslashes() {
    let cases = [
        (r#"m s="plain""#, "plain"),
        (
            r#"m s="with space, comma=equals""#,
            "with space, comma=equals",
        ),
        (r#"m s="say \"hi\"""#, r#"say "hi""#),
        (r#"m s="back\\slash""#, r"back\slash"),
        (r#"m s="lone\slash""#, r"lone\slash"),
        (r#"m s="ends\\""#, r"ends\"),
        (r#"m s="""#, ""),
        (r#"m s="🌡 21°C""#, "🌡 21°C"),
    ];
    for (line, want) in cases {
        assert_eq!(
            field(&one(line), "s"),
            &FieldValue::String(want.into()),
            "{line}"
        );
    }
    assert!(matches!(
        field(&one(r#"m s="a""#), "s"),
        FieldValue::String(Cow::Borrowed(_))
    ));
}

#[test]
fn field_types_follow_the_reference() {
    use FieldValue::*;
    let cases = [
        ("1", Float(1.0)),
        ("1.5", Float(1.5)),
        ("-1.5", Float(-1.5)),
        ("1e3", Float(1000.0)),
        ("1E-3", Float(0.001)),
        ("-1.234456e+78", Float(-1.234456e78)),
        (".5", Float(0.5)),
        ("1i", Integer(1)),
        ("-42i", Integer(-42)),
        ("9223372036854775807i", Integer(i64::MAX)),
        ("-9223372036854775808i", Integer(i64::MIN)),
        ("1u", UInteger(1)),
        ("18446744073709551615u", UInteger(u64::MAX)),
        ("t", Boolean(true)),
        ("T", Boolean(true)),
        ("true", Boolean(true)),
        ("True", Boolean(true)),
        ("TRUE", Boolean(true)),
        ("f", Boolean(false)),
        ("F", Boolean(false)),
        ("false", Boolean(false)),
        ("False", Boolean(false)),
        ("FALSE", Boolean(false)),
    ];
    for (text, want) in cases {
        assert_eq!(field(&one(&format!("m v={text}")), "v"), &want, "{text}");
    }
}

#[test]
fn reference_examples_parse() {
    use FieldValue::*;
    let input = "\
# the reference's examples
myMeasurement,tag1=value1,tag2=value2 fieldKey=\"fieldValue\" 1556813561098000000
myMeasurement fieldKey=\"field string value\" 1556813561098000000
measurementName,tagKey=tagValue fieldKey=\"fieldValue\" 1465839830100400200
home,room=Kitchen temp=21.0,hum=35.9,co=0i 1641024000000000000

home,room=Living\\ Room temp=21.1,hum=35.9,co=0i 1641024000
measurement,tag1=value1 floatField=1.0,intField=1i,uintField=1u,boolField=true,strField=\"x\"
";
    let points = parse_batch(input.as_bytes(), Precision::Ns, &Limits::default()).unwrap();
    assert_eq!(points.len(), 6);
    assert_eq!(points[0].time_ms, Some(1_556_813_561_098));
    assert_eq!(points[2].time_ms, Some(1_465_839_830_100));
    assert_eq!(tags(&points[4]), [("room".into(), "Living Room".into())]);
    assert_eq!(points[4].time_ms, Some(1_641));
    assert_eq!(points[5].time_ms, None);
    let kinds: Vec<_> = points[5].fields.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(
        kinds,
        [
            Float(1.0),
            Integer(1),
            UInteger(1),
            Boolean(true),
            String("x".into())
        ]
    );
}

#[test]
fn blank_lines_comments_crlf_and_spaces() {
    let input = "\r\n  # indented comment\r\n\t\r\nm x=1 5\r\n  m y=2  \r\n#last";
    let points = parse_batch(input.as_bytes(), Precision::Ms, &Limits::default()).unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].time_ms, Some(5));
    assert_eq!(points[1].time_ms, None);
    assert!(parse_batch(b"", Precision::Ms, &Limits::default())
        .unwrap()
        .is_empty());
}

#[test]
fn precision_converts_to_milliseconds_rounding_down() {
    let cases = [
        (
            Precision::Ns,
            "1764748800123456789",
            Some(1_764_748_800_123),
        ),
        (Precision::Ns, "-1", Some(-1)),
        (Precision::Us, "1500", Some(1)),
        (Precision::Us, "-1500", Some(-2)),
        (Precision::Ms, "-5", Some(-5)),
        (Precision::S, "1764748800", Some(1_764_748_800_000)),
        (Precision::S, "9223372036854775807", None),
        (Precision::S, "-9223372036854775808", None),
    ];
    for (precision, t, want) in cases {
        let line = format!("m x=1 {t}");
        let got = parse_batch(line.as_bytes(), precision, &Limits::default());
        match want {
            Some(ms) => assert_eq!(got.unwrap()[0].time_ms, Some(ms), "{precision:?} {t}"),
            None => assert!(got.unwrap_err().message.contains("out of range"), "{t}"),
        }
    }
    assert_eq!(Precision::from_query("us"), Some(Precision::Us));
    assert_eq!(Precision::from_query("h"), None);
}

#[test]
fn errors_name_the_line_and_what_is_wrong() {
    let cases = [
        (
            "m x=1\nm x=2\nm temp=\n",
            3,
            "field value missing for key temp",
        ),
        ("m temp", 1, "field value missing for key temp"),
        ("m temp=,y=1", 1, "field value missing for key temp"),
        ("# c\n\nweather", 3, "no fields"),
        ("m ", 1, "no fields"),
        (",t=v x=1", 1, "measurement missing"),
        ("m,=v x=1", 1, "tag key missing"),
        ("m,t= x=1", 1, "tag value missing for key t"),
        ("m,t x=1", 1, "tag t has no '='"),
        ("m =1", 1, "field key missing"),
        ("m x=1,", 1, "field key missing"),
        ("m x=abc", 1, "invalid field value abc for key x"),
        ("m x=inf", 1, "invalid field value inf"),
        ("m x=NaN", 1, "invalid field value NaN"),
        ("m x=1e999", 1, "invalid field value 1e999"),
        ("m x=1.5i", 1, "invalid integer 1.5i"),
        ("m x=99999999999999999999i", 1, "invalid integer"),
        ("m x=-1u", 1, "invalid unsigned integer -1u"),
        ("m x=yes", 1, "invalid field value yes"),
        ("m x=tru", 1, "invalid unsigned integer tru"),
        ("m s=\"open", 1, "no closing quote"),
        ("m s=\"a\"b", 1, "unexpected text after the string value"),
        ("m x=1 12ab", 1, "invalid timestamp 12ab"),
        ("m x=1 +12", 1, "invalid timestamp +12"),
        ("m x=1 1 2", 1, "unexpected text after the timestamp"),
        ("m x=1,x=2", 1, "key x appears twice"),
        ("m,x=a x=2", 1, "key x appears twice"),
    ];
    for (input, line, message) in cases {
        let e = err(input);
        assert_eq!(e.line, line, "{input:?}: {e}");
        assert!(e.message.contains(message), "{input:?}: {e}");
    }
    let e = err("m x=1\nm temp=\n");
    assert_eq!(e.to_string(), "line 2: field value missing for key temp");
    assert_eq!(e.column, Some(8), "column of the end of `temp=`");
}

#[test]
fn invalid_utf8_is_refused_with_its_line() {
    let e = parse_batch(b"m x=1\nm s=\"\xff\"", Precision::Ms, &Limits::default()).unwrap_err();
    assert_eq!((e.line, e.column), (2, Some(6)));
    assert!(e.message.contains("UTF-8"));
}

#[test]
fn a_bad_line_refuses_the_whole_batch() {
    let mut input = "m x=1\n".repeat(500);
    input.push_str("m x=oops\n");
    input.push_str(&"m x=1\n".repeat(500));
    let e = err(&input);
    assert_eq!(e.line, 501);
}

#[test]
fn limits_hold() {
    let limits = Limits {
        max_line_bytes: 20,
        max_fields_per_line: 3,
        max_lines: 2,
    };
    let parse = |s: &'static str| parse_batch(s.as_bytes(), Precision::Ms, &limits);
    assert!(
        parse("# comment\n\nm x=1\nm x=2\n").is_ok(),
        "comments do not count"
    );
    let e = parse("m x=1\nm x=2\nm x=3").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("more than 2 points"));
    let e = parse("m x=1\nm x=1,yyyyyyyyyyyyyyyy=2").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("longer than 20 bytes"));
    let e = parse("m,a=1,b=2 c=1,d=2").unwrap_err();
    assert!(e.message.contains("more than 3 tags and fields"), "{e}");
    // The iterator stops after the point cap instead of reading on.
    let results: Vec<_> =
        parse_lines(b"m x=1\nm x=1\nm x=1\nm x=1", Precision::Ms, &limits).collect();
    assert_eq!(results.len(), 3);
}

/// Valid lines with random bytes changed, inserted or cut, plus pure
/// noise: the parser answers Ok or Err, never panics, and every point it
/// accepts is one the writer can say again. Seeded, so a failure repeats.
/// (Plain `rand` rather than proptest: no new dependency for this.)
#[test]
fn byte_soup_never_panics() {
    let seeds: &[&[u8]] = &[
        b"weather,device=gw-1,site=a temp=21.5,humidity=40i 1764748800000000000",
        br#"m\ x,t\,k=v\=w s="q\"\\",b=t,u=7u -12"#,
        "h\u{e9},\u{1f4a9}=x f=1e3\r\n# c\n".as_bytes(),
    ];
    let alphabet = b" ,=\\\"#\r\n\tiuteE.-+0123456789abc\xff\xc3";
    let mut rng = StdRng::seed_from_u64(13);
    for round in 0..30_000 {
        let mut input: Vec<u8> = if round % 10 == 0 {
            (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect()
        } else {
            seeds[round % seeds.len()].to_vec()
        };
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..=input.len());
            let b = alphabet[rng.gen_range(0..alphabet.len())];
            match rng.gen_range(0..3) {
                0 if at < input.len() => input[at] = b,
                1 => input.insert(at, b),
                _ => input.truncate(at),
            }
        }
        for precision in [Precision::Ns, Precision::S] {
            if let Ok(points) = parse_batch(&input, precision, &Limits::default()) {
                for p in points {
                    let mut out = String::new();
                    if write_point(&p, Precision::Ms, &mut out).is_ok() {
                        let again = parse_batch(out.as_bytes(), Precision::Ms, &Limits::default());
                        assert_eq!(again.map(|v| v.len()), Ok(1), "{out:?} from {input:?}");
                    }
                }
            }
        }
    }
}

fn random_text(rng: &mut StdRng, allow_empty: bool) -> String {
    let pieces = [
        "a", "Z", "0", " ", ",", "=", "\\", "\"", "#", "\t", "\r", "é", "🌡", "_", "-", "\\ ", "x\\",
    ];
    let min = usize::from(!allow_empty);
    (0..rng.gen_range(min..8))
        .map(|_| pieces[rng.gen_range(0..pieces.len())])
        .collect()
}

fn random_point(rng: &mut StdRng) -> Point<'static> {
    let mut keys: Vec<String> = Vec::new();
    let mut fresh_key = |rng: &mut StdRng| loop {
        let k = random_text(rng, false);
        if !keys.contains(&k) {
            keys.push(k.clone());
            return Cow::Owned(k);
        }
    };
    let measurement = loop {
        let m = random_text(rng, false);
        if !m.starts_with(['#', '\t', ' ']) {
            break m;
        }
    };
    let tags = (0..rng.gen_range(0..4))
        .map(|_| (fresh_key(rng), Cow::Owned(random_text(rng, false))))
        .collect();
    let fields = (0..rng.gen_range(1..5))
        .map(|_| {
            let value = match rng.gen_range(0..5) {
                0 => FieldValue::Float(
                    f64::from_bits(rng.gen::<u64>() >> 2) * rng.gen_range(-1.0..1.0),
                ),
                1 => FieldValue::Integer(rng.gen()),
                2 => FieldValue::UInteger(rng.gen()),
                3 => FieldValue::Boolean(rng.gen()),
                _ => FieldValue::String(Cow::Owned(random_text(rng, true))),
            };
            (fresh_key(rng), value)
        })
        .collect();
    let time_ms = rng
        .gen_bool(0.8)
        .then(|| rng.gen_range(-1_000_000_000_000i64..4_000_000_000_000));
    Point {
        measurement: measurement.into(),
        tags,
        fields,
        time_ms,
    }
    .into_owned()
}

#[test]
fn written_points_parse_back_equal() {
    let mut rng = StdRng::seed_from_u64(42);
    for precision in [Precision::Ns, Precision::Us, Precision::Ms] {
        let points: Vec<Point> = (0..2_000).map(|_| random_point(&mut rng)).collect();
        let mut text = String::new();
        for p in &points {
            write_point(p, precision, &mut text).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        }
        let back = parse_batch(text.as_bytes(), precision, &Limits::default()).unwrap();
        assert_eq!(back, points);
    }
}

#[test]
fn writer_refuses_what_line_protocol_cannot_carry() {
    let mut p = one("m x=1").into_owned();
    let mut out = String::new();
    p.fields[0].1 = FieldValue::Float(f64::NAN);
    assert_eq!(
        write_point(&p, Precision::Ms, &mut out),
        Err(WriteError::NotFinite("x".into()))
    );
    p.fields[0].1 = FieldValue::String("two\nlines".into());
    assert_eq!(
        write_point(&p, Precision::Ms, &mut out),
        Err(WriteError::Newline)
    );
    assert_eq!(out, "", "nothing half written");
    p.fields.clear();
    assert_eq!(
        write_point(&p, Precision::Ms, &mut out),
        Err(WriteError::NoFields)
    );
}

/// `cargo test --release --lib parse_speed -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check: prints lines per second"]
fn parse_speed() {
    let lines = 100_000;
    let mut input = String::new();
    for i in 0..lines {
        input.push_str(&format!(
            "weather,device=gw-{},site=a temp=21.{},humidity={}i {}\n",
            i % 100,
            i % 10,
            i % 90,
            1_764_748_800_000_000_000i64 + i * 1_000_000_000
        ));
    }
    let limits = Limits::default();
    let mut best = f64::MAX;
    for _ in 0..10 {
        let start = std::time::Instant::now();
        let points = parse_batch(input.as_bytes(), Precision::Ns, &limits).unwrap();
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(points.len(), lines as usize);
    }
    println!(
        "parsed {lines} lines ({} bytes) in {:.2} ms (best of 10): {:.2} M lines/s, {:.0} MB/s",
        input.len(),
        best * 1e3,
        lines as f64 / best / 1e6,
        input.len() as f64 / best / 1e6
    );
}
