//! Cross-cutting tests of the codec: golden wire bytes (what go-cty writes and reads), strictness errors, the serde
//! bridge, and property tests (round trips, and no panics on hostile input).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

fn ty(json: &str) -> Type {
    Type::from_json(json.as_bytes()).unwrap()
}

fn enc(v: &Value, t: &Type) -> Vec<u8> {
    encode_msgpack(v, t).unwrap()
}

fn s(x: &str) -> Value {
    Value::string(x)
}

// ---------------------------------------------------------------------------------------------------------------
// Golden bytes: encoding

#[test]
fn encodes_null_and_unknown_like_go_cty() {
    assert_eq!(enc(&Value::Null, &Type::String), [0xc0]);
    assert_eq!(enc(&Value::Unknown, &Type::String), [0xd4, 0x00, 0x00]);
    assert_eq!(enc(&Value::Unknown, &Type::Dynamic), [0xd4, 0x00, 0x00]);
    assert_eq!(
        enc(&Value::Null, &ty(r#"["object",{"a":"string"}]"#)),
        [0xc0]
    );
}

#[test]
fn encodes_numbers_compactly() {
    let n = |n: Number| enc(&Value::Number(n), &Type::Number);
    assert_eq!(n(Number::Int(0)), [0x00]);
    assert_eq!(n(Number::Int(127)), [0x7f]);
    assert_eq!(n(Number::Int(-1)), [0xff]);
    assert_eq!(n(Number::Int(200)), [0xcc, 0xc8]);
    assert_eq!(n(Number::Int(-200)), [0xd1, 0xff, 0x38]);
    assert_eq!(n(Number::Int(70000)), [0xce, 0x00, 0x01, 0x11, 0x70]);
    assert_eq!(n(Number::Int(i64::MIN)), [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    // Whole floats and whole big decimals are integers on the wire, as in go-cty.
    assert_eq!(n(Number::Float(2.0)), [0x02]);
    assert_eq!(n(Number::Big("3.000".into())), [0x03]);
    // Other floats are float64.
    assert_eq!(n(Number::Float(1.5)), [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        n(Number::Float(f64::INFINITY)),
        [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]
    );
    // Big numbers travel as their decimal text.
    let mut big = vec![0xbe];
    big.extend_from_slice(b"123456789012345678901234567890");
    assert_eq!(n(Number::Big("123456789012345678901234567890".into())), big);
    assert_eq!(n(Number::Big("0.1".into())), [0xa3, b'0', b'.', b'1']);
    assert_eq!(n(Number::from(u64::MAX)), {
        let mut v = vec![0xb4];
        v.extend_from_slice(b"18446744073709551615");
        v
    });
    assert_eq!(
        encode_msgpack(&Value::Number(Number::Float(f64::NAN)), &Type::Number)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidNumber
    );
}

#[test]
fn encodes_objects_with_sorted_keys() {
    let t = ty(r#"["object",{"b":"string","a":"number","c":"bool"}]"#);
    let v = Value::object([
        ("c", Value::Bool(true)),
        ("b", s("x")),
        ("a", Value::number(1)),
    ]);
    assert_eq!(
        enc(&v, &t),
        [0x83, 0xa1, b'a', 0x01, 0xa1, b'b', 0xa1, b'x', 0xa1, b'c', 0xc3]
    );
}

#[test]
fn encodes_collections() {
    let list = Value::List(vec![s("b"), s("a")]);
    assert_eq!(
        enc(&list, &ty(r#"["list","string"]"#)),
        [0x92, 0xa1, b'b', 0xa1, b'a']
    );
    // Sets are written in canonical order whatever the in-memory order.
    let set = Value::Set(vec![s("b"), s("a"), s("b")]);
    assert_eq!(
        enc(&set, &ty(r#"["set","string"]"#)),
        [0x92, 0xa1, b'a', 0xa1, b'b']
    );
    let map = Value::Map([("k".to_string(), Value::Bool(false))].into());
    assert_eq!(
        enc(&map, &ty(r#"["map","bool"]"#)),
        [0x81, 0xa1, b'k', 0xc2]
    );
    let tuple = Value::Tuple(vec![s("x"), Value::number(1)]);
    assert_eq!(
        enc(&tuple, &ty(r#"["tuple",["string","number"]]"#)),
        [0x92, 0xa1, b'x', 0x01]
    );
}

#[test]
fn encodes_dynamic_wrapper() {
    let v = Value::Dynamic(Type::String, Box::new(s("x")));
    let mut want = vec![0x92, 0xc4, 0x08];
    want.extend_from_slice(br#""string""#);
    want.extend_from_slice(&[0xa1, b'x']);
    assert_eq!(enc(&v, &Type::Dynamic), want);
    // A plain value in a dynamic slot is wrapped with its implied type.
    assert_eq!(enc(&s("x"), &Type::Dynamic), want);
    let v = Value::List(vec![Value::number(1)]);
    let mut want = vec![0x92, 0xc4, 0x11];
    want.extend_from_slice(br#"["list","number"]"#);
    want.extend_from_slice(&[0x91, 0x01]);
    assert_eq!(enc(&v, &Type::Dynamic), want);
    // Null and unknown in a dynamic slot are not wrapped.
    assert_eq!(enc(&Value::Null, &Type::Dynamic), [0xc0]);
    // A Dynamic value in a slot of exactly its own type is unwrapped.
    assert_eq!(
        enc(
            &Value::Dynamic(Type::Bool, Box::new(Value::Bool(true))),
            &Type::Bool
        ),
        [0xc3]
    );
}

#[test]
fn encode_rejects_nonconforming_values_with_paths() {
    let t = ty(r#"["object",{"listeners":["list",["object",{"port":"number","name":"string"}]]}]"#);
    let listener = |port: Value| Value::object([("port", port), ("name", s("n"))]);
    let ok = Value::object([(
        "listeners",
        Value::List(vec![
            listener(Value::number(1)),
            listener(Value::Null),
            listener(Value::Unknown),
        ]),
    )]);
    assert!(encode_msgpack(&ok, &t).is_ok());

    let wrong_kind = Value::object([(
        "listeners",
        Value::List(vec![
            listener(Value::number(1)),
            listener(Value::number(2)),
            listener(s("hunter2")),
        ]),
    )]);
    let e = encode_msgpack(&wrong_kind, &t).unwrap_err();
    assert_eq!(e.path_string(), ".listeners[2].port");
    assert_eq!(
        e.to_string(),
        "at .listeners[2].port: a number is required, but string was given"
    );

    let missing = Value::object([(
        "listeners",
        Value::List(vec![Value::object([("port", Value::number(1))])]),
    )]);
    let e = encode_msgpack(&missing, &t).unwrap_err();
    assert_eq!(
        e.path,
        vec![PathStep::Attr("listeners".into()), PathStep::Index(0)]
    );
    assert_eq!(e.kind, ErrorKind::MissingAttribute("name".into()));

    let extra = Value::object([("listeners", Value::Null), ("bogus", Value::Null)]);
    assert_eq!(
        encode_msgpack(&extra, &t).unwrap_err().kind,
        ErrorKind::UnsupportedAttribute("bogus".into())
    );
    let e = encode_msgpack(&Value::Tuple(vec![]), &ty(r#"["tuple",["string"]]"#)).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TupleLength {
            required: 1,
            given: 0
        }
    );
    // A set is not a list.
    assert!(encode_msgpack(&Value::Set(vec![]), &ty(r#"["list","string"]"#)).is_err());
    // A Dynamic value whose type differs from the slot's type.
    assert!(encode_msgpack(
        &Value::Dynamic(Type::Bool, Box::new(Value::Bool(true))),
        &Type::String
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// Golden bytes: decoding

#[test]
fn decodes_every_unknown_form() {
    let t = ty(r#"["object",{"a":"string","b":"number","c":["list","string"],"d":"bool"}]"#);
    let mut bytes = vec![0x84];
    // a: fixext1 type 0 (go-cty's unrefined unknown)
    bytes.extend_from_slice(&[0xa1, b'a', 0xd4, 0x00, 0x00]);
    // b: refined unknown, ext8 type 12, payload {1: false, 2: "pre"} (not null, string prefix)
    bytes.extend_from_slice(&[
        0xa1, b'b', 0xc7, 0x08, 0x0c, 0x82, 0x01, 0xc2, 0x02, 0xa3, b'p', b'r', b'e',
    ]);
    // c: zero-length ext8 (what tf-provider writes)
    bytes.extend_from_slice(&[0xa1, b'c', 0xc7, 0x00, 0x00]);
    // d: fixext8 with a payload
    bytes.extend_from_slice(&[0xa1, b'd', 0xd7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8]);
    let v = decode_msgpack(&bytes, &t).unwrap();
    for name in ["a", "b", "c", "d"] {
        assert!(v.get(name).unwrap().is_unknown(), "{name}");
    }
    // Refined unknown list with length bounds (keys 5 and 6), and a top-level unknown.
    let refined_list = [0xc7, 0x05, 0x0c, 0x82, 0x05, 0x01, 0x06, 0x03];
    assert_eq!(
        decode_msgpack(&refined_list, &ty(r#"["list","string"]"#)).unwrap(),
        Value::Unknown
    );
    assert_eq!(
        decode_msgpack(&[0xd4, 0, 0], &Type::Dynamic).unwrap(),
        Value::Unknown
    );
}

#[test]
fn decodes_numbers_in_every_form() {
    let n = |b: &[u8]| match decode_msgpack(b, &Type::Number).unwrap() {
        Value::Number(n) => n,
        v => panic!("not a number: {v:?}"),
    };
    assert_eq!(n(&[0x05]), Number::Int(5));
    assert_eq!(n(&[0xe0]), Number::Int(-32));
    assert_eq!(n(&[0xd0, 0x80]), Number::Int(-128));
    assert_eq!(n(&[0xcd, 0x1f, 0x90]), Number::Int(8080));
    assert!(
        matches!(n(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Number::Big(s) if s == "18446744073709551615")
    );
    assert_eq!(n(&[0xca, 0x3f, 0xc0, 0x00, 0x00]), Number::Float(1.5));
    assert_eq!(n(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]), Number::Float(1.5));
    assert!(matches!(n(&[0xa3, b'0', b'.', b'1']), Number::Big(s) if s == "0.1"));
    let mut big = vec![0xbe];
    big.extend_from_slice(b"123456789012345678901234567890");
    assert!(matches!(n(&big), Number::Big(s) if s == "123456789012345678901234567890"));
    // Not a number: a non-decimal string, NaN.
    assert_eq!(
        decode_msgpack(&[0xa2, b'n', b'o'], &Type::Number)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidNumber
    );
    assert_eq!(
        decode_msgpack(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1], &Type::Number)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidNumber
    );
}

#[test]
fn decodes_dynamic_with_bin_or_str_type() {
    let want = Value::Dynamic(Type::String, Box::new(s("x")));
    let mut bin = vec![0x92, 0xc4, 0x08];
    bin.extend_from_slice(br#""string""#);
    bin.extend_from_slice(&[0xa1, b'x']);
    assert_eq!(decode_msgpack(&bin, &Type::Dynamic).unwrap(), want);
    let mut st = vec![0x92, 0xa8];
    st.extend_from_slice(br#""string""#);
    st.extend_from_slice(&[0xa1, b'x']);
    assert_eq!(decode_msgpack(&st, &Type::Dynamic).unwrap(), want);
    // Typed null inside the wrapper is kept with its type.
    let mut typed_null = vec![0x92, 0xa6];
    typed_null.extend_from_slice(br#""bool""#);
    typed_null.push(0xc0);
    assert_eq!(
        decode_msgpack(&typed_null, &Type::Dynamic).unwrap(),
        Value::Dynamic(Type::Bool, Box::new(Value::Null))
    );
    // A wrapper announcing "dynamic" is transparent (cty reads the inner value).
    let mut nested = vec![0x92, 0xa9];
    nested.extend_from_slice(br#""dynamic""#);
    nested.extend_from_slice(&bin);
    assert_eq!(decode_msgpack(&nested, &Type::Dynamic).unwrap(), want);
    assert_eq!(
        decode_json(
            br#"{"type":"dynamic","value":{"value":"x","type":"string"}}"#,
            &Type::Dynamic
        )
        .unwrap(),
        want
    );
    assert_eq!(
        enc(
            &Value::Dynamic(Type::Dynamic, Box::new(want.clone())),
            &Type::Dynamic
        ),
        bin
    );
    // Not a pair, or a bad type.
    assert!(decode_msgpack(&[0xa1, b'x'], &Type::Dynamic).is_err());
    assert!(decode_msgpack(&[0x92, 0xa1, b'x', 0xc0], &Type::Dynamic).is_err());
}

#[test]
fn decodes_sets_canonically() {
    let bytes = [0x93, 0xa1, b'b', 0xa1, b'a', 0xa1, b'b'];
    assert_eq!(
        decode_msgpack(&bytes, &ty(r#"["set","string"]"#)).unwrap(),
        Value::Set(vec![s("a"), s("b")])
    );
}

#[test]
fn object_decoding_is_strict_with_paths() {
    let t = ty(r#"["object",{"l":["list",["object",{"a":"number","b":"string"}]]}]"#);
    let good = [
        0x81, 0xa1, b'l', 0x91, 0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xa1, b'x',
    ];
    assert!(decode_msgpack(&good, &t).is_ok());

    let too_few = [
        0x81, 0xa1, b'l', 0x92, 0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xc0, 0x81, 0xa1, b'a', 0x01,
    ];
    let e = decode_msgpack(&too_few, &t).unwrap_err();
    assert_eq!(
        e.to_string(),
        "at .l[1]: an object with 2 attributes is required (1 given)"
    );
    assert_eq!(e.path, vec![PathStep::Attr("l".into()), PathStep::Index(1)]);

    let unknown_attr = [
        0x81, 0xa1, b'l', 0x91, 0x82, 0xa1, b'a', 0x01, 0xa1, b'x', 0xc0,
    ];
    let e = decode_msgpack(&unknown_attr, &t).unwrap_err();
    assert_eq!(e.to_string(), "at .l[0]: unsupported attribute \"x\"");

    let dup = [
        0x81, 0xa1, b'l', 0x91, 0x82, 0xa1, b'a', 0x01, 0xa1, b'a', 0x01,
    ];
    assert_eq!(
        decode_msgpack(&dup, &t).unwrap_err().kind,
        ErrorKind::DuplicateKey("a".into())
    );

    // A wrong kind deep inside: the error names the place and the kinds, never the value.
    let mut secret = vec![0x81, 0xa1, b'l', 0x91, 0x82, 0xa1, b'a', 0xa7];
    secret.extend_from_slice(b"hunter2");
    secret.extend_from_slice(&[0xa1, b'b', 0xc0]);
    let e = decode_msgpack(&secret, &t).unwrap_err();
    assert_eq!(e.path_string(), ".l[0].a");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let mut secret = vec![
        0x81, 0xa1, b'l', 0x91, 0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xa7,
    ];
    secret.extend_from_slice(b"hunter2");
    let e = decode_msgpack(
        &secret,
        &ty(r#"["object",{"l":["list",["object",{"a":"number","b":"bool"}]]}]"#),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "at .l[0].b: a bool is required, but string was given"
    );
}

#[test]
fn malformed_input_is_an_error() {
    let t = ty(r#"["list","string"]"#);
    assert!(decode_msgpack(&[], &t).is_err());
    assert!(decode_msgpack(&[0x92, 0xa1, b'a'], &t).is_err()); // truncated
    assert!(decode_msgpack(&[0x91, 0xa1, b'a', 0x00], &t).is_err()); // trailing data
    assert!(decode_msgpack(&[0x91, 0xa2, 0xff, 0xfe], &t).is_err()); // invalid UTF-8
    assert!(decode_msgpack(&[0xc1], &t).is_err()); // reserved marker
    assert!(decode_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff], &t).is_err()); // huge length, no data
    assert!(decode_msgpack(&[0xc9, 0xff, 0xff, 0xff, 0xff, 0x00], &Type::String).is_err()); // huge ext
    let e = decode_msgpack(&[0x93, 0xc0, 0xc0, 0x01], &t).unwrap_err();
    assert_eq!(e.path, vec![PathStep::Index(2)]);
    let e =
        decode_msgpack(&[0x91, 0xa1, b'a'], &ty(r#"["tuple",["string","string"]]"#)).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TupleLength {
            required: 2,
            given: 1
        }
    );
}

#[test]
fn hostile_nesting_is_cut_off_without_overflowing_the_stack() {
    // 100k nested dynamic wrappers, each announcing another dynamic list.
    let mut bytes = Vec::new();
    let tj = br#"["list","dynamic"]"#;
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[0x92, 0xc4, tj.len() as u8]);
        bytes.extend_from_slice(tj);
        bytes.push(0x91);
    }
    bytes.push(0xc0);
    let e = decode_msgpack(&bytes, &Type::Dynamic).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep(MAX_DEPTH));
    // A deep type announced inside a wrapper.
    let deep_type = format!(
        "{}\"string\"{}",
        "[\"list\",".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut bytes = vec![0x92, 0xc6];
    bytes.extend_from_slice(&(deep_type.len() as u32).to_be_bytes());
    bytes.extend_from_slice(deep_type.as_bytes());
    bytes.push(0xc0);
    assert!(decode_msgpack(&bytes, &Type::Dynamic).is_err());
    // Deep values in memory are refused by the encoder too.
    let mut v = Value::Null;
    let mut t = Type::String;
    for _ in 0..(MAX_DEPTH + 5) {
        v = Value::List(vec![v]);
        t = Type::list(t);
    }
    assert_eq!(
        encode_msgpack(&v, &t).unwrap_err().kind,
        ErrorKind::TooDeep(MAX_DEPTH)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Serde bridge

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Listener {
    port: u16,
    address: Tf<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    id: Tf<String>,
    name: String,
    retries: Option<i64>,
    servers: Tf<Vec<String>>,
    listener: Listener,
    aliases: BTreeSet<String>,
    labels: BTreeMap<String, String>,
    weight: f64,
    enabled: bool,
    mode: Mode,
    big: Option<String>,
}

fn model_type() -> Type {
    ty(r#"["object",{
        "id":"string","name":"string","retries":"number","servers":["list","string"],
        "listener":["object",{"port":"number","address":"string"}],
        "aliases":["set","string"],"labels":["map","string"],"weight":"number","enabled":"bool",
        "mode":"string","big":"number","not_in_model":["list","bool"]
    }]"#)
}

fn sample_model() -> Model {
    Model {
        id: Tf::Unknown,
        name: "k3s-api".into(),
        retries: None,
        servers: Tf::Known(vec!["10.0.0.2".into(), "10.0.0.1".into()]),
        listener: Listener {
            port: 6443,
            address: Tf::Null,
        },
        aliases: ["b".to_string(), "a".to_string()].into(),
        labels: [("env".to_string(), "lab".to_string())].into(),
        weight: 0.5,
        enabled: true,
        mode: Mode::Tcp,
        big: Some("123456789012345678901234567890".into()),
    }
}

#[test]
fn model_round_trips_through_value_and_msgpack() {
    let t = model_type();
    let m = sample_model();
    let v = to_value(&m, &t).unwrap();
    assert!(v.get("id").unwrap().is_unknown());
    assert!(v.get("retries").unwrap().is_null());
    assert!(
        v.get("not_in_model").unwrap().is_null(),
        "attributes the model lacks become null"
    );
    assert_eq!(v.get("aliases").unwrap(), &Value::Set(vec![s("a"), s("b")]));
    assert_eq!(
        v.get("servers").unwrap(),
        &Value::List(vec![s("10.0.0.2"), s("10.0.0.1")])
    );
    assert!(
        matches!(v.get("big").unwrap(), Value::Number(Number::Big(b)) if b == "123456789012345678901234567890")
    );
    assert_eq!(from_value::<Model>(&v).unwrap(), m);

    let bytes = encode_msgpack(&v, &t).unwrap();
    let back = decode_msgpack(&bytes, &t).unwrap();
    assert_eq!(back, v);
    assert_eq!(from_value::<Model>(&back).unwrap(), m);

    // The other states of the tri-state fields.
    let mut m2 = m.clone();
    m2.id = Tf::Known("abc".into());
    m2.servers = Tf::Unknown;
    m2.retries = Some(3);
    m2.listener.address = Tf::Known("0.0.0.0".into());
    let v2 = to_value(&m2, &t).unwrap();
    let back = decode_msgpack(&encode_msgpack(&v2, &t).unwrap(), &t).unwrap();
    assert_eq!(from_value::<Model>(&back).unwrap(), m2);
}

#[test]
fn model_errors_name_the_attribute() {
    let t = model_type();
    let v = to_value(&sample_model(), &t).unwrap();
    let with = |name: &str, val: Value| {
        let Value::Object(mut m) = v.clone() else {
            unreachable!()
        };
        m.insert(name.into(), val);
        Value::Object(m)
    };
    // Out of range for u16.
    let bad = with(
        "listener",
        Value::object([("port", Value::number(70000)), ("address", Value::Null)]),
    );
    let e = from_value::<Model>(&bad).unwrap_err();
    assert_eq!(e.path_string(), ".listener.port");
    assert!(matches!(e.kind, ErrorKind::NumberRange(_)));
    // Not a whole number.
    let bad = with(
        "listener",
        Value::object([
            ("port", Value::Number(Number::Float(1.5))),
            ("address", Value::Null),
        ]),
    );
    assert_eq!(
        from_value::<Model>(&bad).unwrap_err().path_string(),
        ".listener.port"
    );
    // Unknown where the model has an Option.
    let e = from_value::<Model>(&with("retries", Value::Unknown)).unwrap_err();
    assert_eq!(
        (e.path_string(), e.kind),
        (".retries".to_string(), ErrorKind::Unknown)
    );
    // Null where the model requires a value.
    let e = from_value::<Model>(&with("name", Value::Null)).unwrap_err();
    assert_eq!(
        (e.path_string(), e.kind),
        (".name".to_string(), ErrorKind::Null)
    );
    // Unknown enum variant: the message names the choices, not the value.
    let e = from_value::<Model>(&with("mode", s("hunter2"))).unwrap_err();
    assert_eq!(e.path_string(), ".mode");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().contains("`tcp`"), "{e}");
    // Wrong kind inside a list.
    let e = from_value::<Model>(&with(
        "servers",
        Value::List(vec![s("a"), Value::List(vec![])]),
    ))
    .unwrap_err();
    assert_eq!(e.path_string(), ".servers[1]");
    // Missing struct field (the value is not an object of the schema).
    let e = from_value::<Listener>(&Value::object([("port", Value::number(1))])).unwrap_err();
    assert!(e.to_string().contains("missing field `address`"), "{e}");
    // to_value: a model field the schema does not have.
    let e = to_value(&sample_model(), &ty(r#"["object",{"name":"string"}]"#)).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedAttribute(_)));
    // to_value: a kind that cannot convert, deep inside.
    let e = to_value(&sample_model(), &{
        let Type::Object(mut a) = model_type() else {
            unreachable!()
        };
        a.insert(
            "listener".into(),
            ty(r#"["object",{"port":"bool","address":"string"}]"#),
        );
        Type::Object(a)
    })
    .unwrap_err();
    assert_eq!(e.path_string(), ".listener.port");
}

#[test]
fn serde_bridge_conversions() {
    // Numbers and bools convert to strings as Terraform would; decimal strings to numbers.
    assert_eq!(to_value(&8080u16, &Type::String).unwrap(), s("8080"));
    assert_eq!(
        to_value("12.50", &Type::Number).unwrap(),
        Value::Number(Number::Big("12.50".into()))
    );
    assert!(to_value("x", &Type::Number).is_err());
    // A String field keeps a big number's exact text.
    let v = Value::Number(Number::Big("1e400".into()));
    assert_eq!(from_value::<String>(&v).unwrap(), "1e400");
    // Maps from objects and objects from maps.
    let v = to_value(
        &BTreeMap::from([("a", 1)]),
        &ty(r#"["object",{"a":"number","b":"number"}]"#),
    )
    .unwrap();
    assert_eq!(
        v,
        Value::object([("a", Value::number(1)), ("b", Value::Null)])
    );
    let m: BTreeMap<String, i64> = from_value(&v.clone())
        .map(|m: BTreeMap<String, Option<i64>>| {
            m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
        })
        .unwrap();
    assert_eq!(m, BTreeMap::from([("a".to_string(), 1)]));
    // Tuples.
    let v = to_value(&("x", 2), &ty(r#"["tuple",["string","number"]]"#)).unwrap();
    assert_eq!(v, Value::Tuple(vec![s("x"), Value::number(2)]));
    assert_eq!(
        from_value::<(String, u8)>(&v).unwrap(),
        ("x".to_string(), 2)
    );
    // A dynamic slot: wrapped on the way in, seen through on the way out.
    let v = to_value(&vec!["a"], &Type::Dynamic).unwrap();
    assert_eq!(
        v,
        Value::Dynamic(
            Type::list(Type::String),
            Box::new(Value::List(vec![s("a")]))
        )
    );
    assert_eq!(
        from_value::<Vec<String>>(&v).unwrap(),
        vec!["a".to_string()]
    );
    // Integers from whole numbers in any representation.
    assert_eq!(
        from_value::<i64>(&Value::Number(Number::Big("1e3".into()))).unwrap(),
        1000
    );
    assert_eq!(
        from_value::<u64>(&Value::Number(Number::from(u64::MAX))).unwrap(),
        u64::MAX
    );
    assert_eq!(
        from_value::<f64>(&Value::Number(Number::Int(3))).unwrap(),
        3.0
    );
    // NaN cannot be a Terraform value.
    assert!(to_value(&f64::NAN, &Type::Number).is_err());
    // Enums with data are refused with a clear message.
    #[derive(Serialize)]
    enum E {
        A(u8),
    }
    assert!(to_value(&E::A(1), &Type::String).is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// Property tests

fn arb_type() -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![
        Just(Type::String),
        Just(Type::Number),
        Just(Type::Bool),
        Just(Type::Dynamic)
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            prop::collection::btree_map("[a-z_]{1,6}", inner.clone(), 0..4).prop_map(Type::Object),
            prop::collection::vec(inner, 0..3).prop_map(Type::Tuple),
        ]
    })
}

fn arb_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::Int),
        any::<f64>()
            .prop_filter("no NaN", |f| !f.is_nan())
            .prop_map(Number::Float),
        "-?[1-9][0-9]{0,40}(\\.[0-9]{1,12})?".prop_map(Number::Big),
        "-?[1-9](\\.[0-9]{1,5})?e-?[0-9]{1,3}".prop_map(Number::Big),
    ]
}

fn arb_known(t: &Type) -> BoxedStrategy<Value> {
    match t {
        Type::String => ".{0,8}".prop_map(Value::String).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::List(e) => prop::collection::vec(arb_value(e), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Set(e) => prop::collection::vec(arb_value(e), 0..4)
            .prop_map(Value::set)
            .boxed(),
        Type::Map(e) => prop::collection::btree_map(".{0,4}", arb_value(e), 0..4)
            .prop_map(Value::Map)
            .boxed(),
        Type::Object(attrs) => {
            let parts: Vec<_> = attrs
                .iter()
                .map(|(k, at)| (Just(k.clone()), arb_value(at)))
                .collect();
            parts
                .prop_map(|kv| Value::Object(kv.into_iter().collect()))
                .boxed()
        }
        Type::Tuple(ets) => {
            let parts: Vec<_> = ets.iter().map(arb_value).collect();
            parts.prop_map(Value::Tuple).boxed()
        }
        Type::Dynamic => {
            // A concrete type without nested dynamics, and a value of it.
            let concrete = prop_oneof![
                Just(Type::String),
                Just(Type::Number),
                Just(Type::Bool),
                Just(Type::list(Type::String)),
                Just(Type::object([
                    ("a", Type::Number),
                    ("b", Type::set(Type::Bool))
                ])),
            ];
            concrete
                .prop_flat_map(|ct| {
                    arb_value(&ct).prop_map(move |v| Value::Dynamic(ct.clone(), Box::new(v)))
                })
                .boxed()
        }
    }
}

fn arb_value(t: &Type) -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => Just(Value::Unknown),
        6 => arb_known(t),
    ]
    .boxed()
}

fn arb_typed_value() -> impl Strategy<Value = (Type, Value)> {
    arb_type().prop_flat_map(|t| {
        let v = arb_value(&t);
        (Just(t), v)
    })
}

/// Test-only writer of cty's JSON value form, to check `decode_json` against generated values. None for values
/// JSON cannot hold (unknowns, infinities).
fn to_json_text(v: &Value, t: &Type) -> Option<String> {
    fn q(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }
    Some(match (v, t) {
        (Value::Unknown, _) => return None,
        (Value::Null, _) => "null".into(),
        (Value::Dynamic(vt, inner), Type::Dynamic) => format!(
            "{{\"value\":{},\"type\":{}}}",
            to_json_text(inner, vt)?,
            String::from_utf8(vt.to_json()).unwrap()
        ),
        (Value::String(x), _) => q(x),
        (Value::Bool(b), _) => b.to_string(),
        (Value::Number(Number::Float(f)), _) if f.is_infinite() => return None,
        (Value::Number(Number::Float(f)), _) => format!("{f:e}"),
        (Value::Number(n), _) => n.to_decimal_string(),
        (Value::List(items) | Value::Set(items), Type::List(e) | Type::Set(e)) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| to_json_text(i, e))
                .collect::<Option<Vec<_>>>()?
                .join(",")
        ),
        (Value::Tuple(items), Type::Tuple(ets)) => format!(
            "[{}]",
            items
                .iter()
                .zip(ets)
                .map(|(i, e)| to_json_text(i, e))
                .collect::<Option<Vec<_>>>()?
                .join(",")
        ),
        (Value::Map(m), Type::Map(e)) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, i)| Some(format!("{}:{}", q(k), to_json_text(i, e)?)))
                .collect::<Option<Vec<_>>>()?
                .join(",")
        ),
        (Value::Object(m), Type::Object(at)) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, i)| Some(format!("{}:{}", q(k), to_json_text(i, &at[k])?)))
                .collect::<Option<Vec<_>>>()?
                .join(",")
        ),
        _ => panic!("generated value does not conform: {v:?} / {t:?}"),
    })
}

proptest! {
    // 256 cases each by default (PROPTEST_CASES overrides); the whole block runs in well under a second.

    #[test]
    fn msgpack_round_trips((t, v) in arb_typed_value()) {
        let bytes = encode_msgpack(&v, &t).unwrap();
        let back = decode_msgpack(&bytes, &t).unwrap();
        prop_assert_eq!(&back, &v);
        // Encoding is deterministic: the decoded value encodes to the same bytes.
        prop_assert_eq!(encode_msgpack(&back, &t).unwrap(), bytes);
    }

    #[test]
    fn type_json_round_trips(t in arb_type()) {
        prop_assert_eq!(Type::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn conform_is_identity_on_typed_values((t, v) in arb_typed_value()) {
        prop_assert_eq!(conform_value(v.clone(), &t).unwrap(), v);
    }

    #[test]
    fn json_round_trips((t, v) in arb_typed_value()) {
        if let Some(text) = to_json_text(&v, &t) {
            let back = decode_json(text.as_bytes(), &t).unwrap();
            prop_assert_eq!(back, v);
        }
    }

    #[test]
    fn msgpack_decode_never_panics_on_arbitrary_bytes(
        t in arb_type(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode_msgpack(&bytes, &t);
        let _ = decode_msgpack(&bytes, &Type::Dynamic);
    }

    #[test]
    fn msgpack_decode_never_panics_on_mutated_values(
        (t, v) in arb_typed_value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_msgpack(&v, &t).unwrap();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        // Whatever decodes must re-encode, and decode again to the same value.
        for bytes in [bytes.clone(), bytes[..cut.index(bytes.len() + 1)].to_vec()] {
            if let Ok(v) = decode_msgpack(&bytes, &t) {
                let again = encode_msgpack(&v, &t).unwrap();
                prop_assert_eq!(decode_msgpack(&again, &t).unwrap(), v);
            }
        }
    }

    #[test]
    fn json_decode_never_panics(
        t in arb_type(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        text in "[\\[\\]{}\",:0-9a-z.eE+\\- \\\\]{0,64}",
    ) {
        let _ = decode_json(&bytes, &t);
        let _ = decode_json(text.as_bytes(), &t);
        let _ = Type::from_json(text.as_bytes());
    }

    #[test]
    fn deep_nesting_never_overflows(depth in 0usize..5000, open in prop::sample::select(vec![0x91u8, 0x81, 0xdc])) {
        let mut bytes = vec![open; depth];
        bytes.push(0xc0);
        let mut t = Type::String;
        for _ in 0..depth.min(200) {
            t = Type::list(t);
        }
        let _ = decode_msgpack(&bytes, &t);
        let _ = decode_msgpack(&bytes, &Type::Dynamic);
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = decode_json(json.as_bytes(), &t);
    }
}

#[test]
fn nested_models_with_unknowns_inside_collections() {
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    struct Member {
        name: String,
        id: Tf<String>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pool {
        members: Tf<Vec<Member>>,
        by_name: BTreeSet<Member>,
        settings: Option<BTreeMap<String, Tf<i64>>>,
    }
    let member = ty(r#"["object",{"name":"string","id":"string"}]"#);
    let t = Type::object([
        ("members", Type::list(member.clone())),
        ("by_name", Type::set(member)),
        ("settings", Type::map(Type::Number)),
    ]);
    let m = Pool {
        members: Tf::Known(vec![
            Member {
                name: "a".into(),
                id: Tf::Unknown,
            },
            Member {
                name: "b".into(),
                id: Tf::Known("2".into()),
            },
        ]),
        by_name: [
            Member {
                name: "z".into(),
                id: Tf::Null,
            },
            Member {
                name: "y".into(),
                id: Tf::Unknown,
            },
        ]
        .into(),
        settings: Some(
            [
                ("x".to_string(), Tf::Unknown),
                ("y".to_string(), Tf::Known(-4)),
            ]
            .into(),
        ),
    };
    let v = to_value(&m, &t).unwrap();
    let back = decode_msgpack(&encode_msgpack(&v, &t).unwrap(), &t).unwrap();
    assert_eq!(back, v);
    assert_eq!(from_value::<Pool>(&back).unwrap(), m);
    // The same model read through a dynamic wrapper.
    let wrapped = Value::Dynamic(t.clone(), Box::new(v));
    assert_eq!(from_value::<Pool>(&wrapped).unwrap(), m);
}
