use serde_json::json;

use super::{assert_parse_err, check, expr, parse_err};
use crate::rules::{Expr, ParseError, MAX_DEPTH, MAX_LIST_LEN, MAX_SOURCE_LEN};

#[test]
fn brief_examples_parse() {
    for src in [
        "true",
        "@user != null",
        "owner = @user.id",
        "tenant = @user.tenant",
        "owner = @user.id || @user.id in shared_with",
        "device = 'gw-7' && temp > 30",
        "'collector' in @user.roles",
        "meta.site = \"north\"",
        "!(level in ['warn','crit'])",
        "created < @now",
        "ok && temp > 3",
    ] {
        let e = expr(src);
        assert_eq!(e.source(), src);
        assert_eq!(e.to_string(), src);
    }
    let parsed: Expr = "a = 1".parse().unwrap();
    assert_eq!(parsed.source(), "a = 1");
}

#[test]
fn literals() {
    assert!(check("n = -3", json!({"n": -3})));
    assert!(check("n = 2.5e-3", json!({"n": 0.0025})));
    assert!(check("n = 1E2", json!({"n": 100})));
    assert!(check("n = 1e+2", json!({"n": 100})));
    assert!(check("n=-1", json!({"n": -1})));
    assert!(check("s = 'it\\'s'", json!({"s": "it's"})));
    assert!(check("s = \"a\\\"b\"", json!({"s": "a\"b"})));
    assert!(check("s = 'a\\\\b'", json!({"s": "a\\b"})));
    assert!(check("s = 'l1\\nl2\\tx'", json!({"s": "l1\nl2\tx"})));
    assert!(check("s = \"it's\"", json!({"s": "it's"})));
    assert!(check("s = 'é😀'", json!({"s": "é😀"})));
    assert!(check(
        "x = null && y = true && z = false",
        json!({"y": true, "z": false})
    ));
    assert!(check("meta.in = 1", json!({"meta": {"in": 1}})));
    assert!(check("_a.b_2 = 1", json!({"_a": {"b_2": 1}})));
    assert!(check("\t a\n=\r\n1 ", json!({"a": 1})));
}

#[test]
fn error_positions() {
    assert_parse_err("temp >", 6, "expected a value after '>'");
    assert_parse_err("device = 'gw", 9, "unterminated string");
    assert_parse_err("a = \"x", 4, "unterminated string");
    assert_parse_err("a = 'x\\", 4, "unterminated string");
    assert_parse_err("a = b = c", 6, "cannot be chained");
    assert_parse_err("a < b < c", 6, "cannot be chained");
    assert_parse_err(
        "@foo = 1",
        0,
        "unknown variable @foo, expected @user or @now",
    );
    assert_parse_err("x = @", 4, "expected a variable name after '@'");
    assert_parse_err("status = 'x' )", 13, "unexpected ')'");
    assert_parse_err(")", 0, "unexpected ')'");
    assert_parse_err("(a = 1", 6, "expected ')' to close the '(' at position 0");
    assert_parse_err("(a = 1 b)", 7, "expected ')'");
    assert_parse_err("a & b", 2, "expected '&&'");
    assert_parse_err("a | b", 2, "expected '||'");
    assert_parse_err("", 0, "empty expression");
    assert_parse_err("   ", 0, "empty expression");
    assert_parse_err("a &&", 4, "expected a condition after '&&'");
    assert_parse_err("a || )", 5, "expected a condition after '||'");
    assert_parse_err("!", 1, "expected a condition after '!'");
    assert_parse_err("()", 1, "expected a condition after '('");
    assert_parse_err("a = 1 and b = 2", 6, "use '&&'");
    assert_parse_err("a = 1 or b = 2", 6, "use '||'");
    assert_parse_err("a = 1 b", 6, "unexpected field 'b'");
    assert_parse_err("@user.foo = 1", 0, "unknown attribute @user.foo");
    assert_parse_err("@user. = 1", 6, "expected an attribute");
    assert_parse_err("@user.id.x = 1", 8, "@user.id has no attributes");
    assert_parse_err("@now.x", 4, "@now has no attributes");
    assert_parse_err("x = 'a\\qb'", 6, "unknown escape '\\q'");
    assert_parse_err("x = 1.", 6, "expected a digit after the decimal point");
    assert_parse_err("x = 1e", 6, "expected a digit in the exponent");
    assert_parse_err("x = 3abc", 4, "invalid number '3abc'");
    assert_parse_err("x = 1.2.3", 4, "invalid number");
    assert_parse_err("x = -y", 4, "expected a number after '-'");
    assert_parse_err("x = 1e999", 4, "out of range");
    assert_parse_err("meta. = 1", 5, "expected a field name after '.'");
    assert_parse_err("true.x = 1", 0, "keyword");
    assert_parse_err("(a = 1) = 2", 8, "cannot apply '='");
    assert_parse_err("a = (b = 1)", 4, "found a condition in parentheses");
    assert_parse_err("a = !b", 4, "expected a value after '='");
    assert_parse_err("a == ", 5, "expected a value after '=='");
    assert_parse_err("= 3", 0, "expected a field or value before '='");
    assert_parse_err("in", 0, "expected a field or value before 'in'");
    assert_parse_err("a in", 4, "expected a value after 'in'");
    assert_parse_err("x in [1, 2", 10, "expected ',' or ']'");
    assert_parse_err("x in [1,]", 8, "expected a list element after ','");
    assert_parse_err("x in [,]", 6, "expected a list element or ']'");
    assert_parse_err("x in [y]", 6, "field 'y' is not allowed");
    assert_parse_err("x in [(1)]", 6, "expected a list element");
    assert_parse_err("a = é", 4, "unexpected character 'é'");
    assert_parse_err("a # b", 2, "unexpected character '#'");
    // Positions count chars, not bytes.
    assert_parse_err("'é😀' = x )", 9, "unexpected ')'");
}

#[test]
fn parse_error_display() {
    let err = parse_err("temp >");
    assert_eq!(
        err.to_string(),
        "at position 6: expected a value after '>', found the end of the expression"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
    assert_eq!(boxed.to_string(), err.to_string());
    assert_eq!(
        parse_err("device = 'gw"),
        ParseError {
            position: 9,
            message: "unterminated string (missing closing ')".to_owned()
        }
    );
}

#[test]
fn length_limit() {
    let at_limit = format!("true{}", " ".repeat(MAX_SOURCE_LEN - 4));
    assert_eq!(at_limit.len(), MAX_SOURCE_LEN);
    assert!(Expr::parse(&at_limit).is_ok());
    let over = format!("{at_limit} ");
    assert_parse_err(&over, MAX_SOURCE_LEN, "too long");
    // Multi-byte text: the position is the char that crosses the limit.
    let wide = format!("s = '{}'", "é".repeat(MAX_SOURCE_LEN));
    assert_parse_err(&wide, 5 + (MAX_SOURCE_LEN - 5) / 2, "too long");
    assert_parse_err(&"(".repeat(100_000), MAX_SOURCE_LEN, "too long");
    // A long flat chain is fine: chains do not nest.
    let chain = vec!["a = 1"; 400].join(" && ");
    assert!(chain.len() < MAX_SOURCE_LEN);
    assert!(check(&chain, json!({"a": 1})));
    let chain = vec!["a = 1"; 400].join(" || ");
    assert!(!check(&chain, json!({"a": 2})));
}

#[test]
fn depth_limit() {
    let parens = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
    assert!(check(&parens(MAX_DEPTH), json!({})));
    assert_parse_err(&parens(MAX_DEPTH + 1), MAX_DEPTH, "nested too deeply");
    assert_parse_err(&"(".repeat(4000), MAX_DEPTH, "nested too deeply");

    let nots = |n: usize| format!("{}true", "!".repeat(n));
    assert!(check(&nots(MAX_DEPTH), json!({})));
    assert_parse_err(&nots(MAX_DEPTH + 1), MAX_DEPTH, "nested too deeply");

    let lists = |n: usize| format!("[] in {}{}", "[".repeat(n), "]".repeat(n));
    assert!(Expr::parse(&lists(MAX_DEPTH)).is_ok());
    assert_parse_err(&lists(MAX_DEPTH + 1), 6 + MAX_DEPTH, "nested too deeply");

    // The levels add up whatever their kind.
    let mixed = |n: usize| format!("{}a = [[1]]{}", "!(".repeat(n), ")".repeat(n));
    assert!(Expr::parse(&mixed(MAX_DEPTH / 2 - 1)).is_ok());
    assert!(parse_err(&mixed(MAX_DEPTH / 2)).message.contains("nested"));
}

#[test]
fn list_length_limit() {
    let list = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("x in [{}]", items.join(","))
    };
    assert!(check(&list(MAX_LIST_LEN), json!({"x": 255})));
    let over = list(MAX_LIST_LEN + 1);
    let last = over.rfind(',').unwrap() + 1;
    assert_parse_err(&over, last, "too many elements");
}

#[test]
fn expr_is_send_sync_and_clone() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<Expr>();
    let a = expr("a = 1");
    let b = a.clone();
    assert_eq!(a.source(), b.source());
    assert!(format!("{a:?}").contains("Cmp"));
}

#[test]
fn cost_counts_nodes_operands_and_list_elements() {
    let cost = |src: &str| Expr::parse(src).unwrap().cost();
    assert_eq!(cost("a = 1"), 3);
    assert_eq!(cost("a = 1 && b = 2"), 7);
    assert_eq!(cost("!(a = 1)"), 4);
    assert_eq!(cost("a in ['x', 'y', 'z']"), 6);
    assert!(cost("a in [1, 2, 3, 4, 5, 6, 7, 8]") > cost("a in [1]"));
}
