//! Recursive-descent parser.
//!
//! `||` and `&&` chains are parsed with loops, so only parentheses, `!` and list
//! literals recurse; those are what the depth limit counts. That bounds both the
//! parser's stack and the depth of the tree the evaluator later recurses over.

use serde_json::Value;

use super::ast::{Node, Op, Operand, Path};
use super::lexer::{tokenize, Tok, Token, Tokens};
use super::{ParseError, MAX_DEPTH, MAX_LIST_LEN, MAX_SOURCE_LEN};

pub(super) fn parse(src: &str) -> Result<Node, ParseError> {
    if src.len() > MAX_SOURCE_LEN {
        let pos = src
            .char_indices()
            .position(|(at, c)| at + c.len_utf8() > MAX_SOURCE_LEN)
            .unwrap_or(0);
        return Err(ParseError::new(
            pos,
            format!(
                "expression is too long ({} bytes, the limit is {MAX_SOURCE_LEN})",
                src.len()
            ),
        ));
    }
    let Tokens { list, eof } = tokenize(src)?;
    let mut parser = Parser {
        tokens: list,
        idx: 0,
        eof,
    };
    if parser.peek().kind == Tok::Eof {
        return Err(ParseError::new(0, "empty expression"));
    }
    let root = parser.or(0)?;
    let next = parser.peek();
    if next.kind != Tok::Eof {
        return Err(trailing(next, None));
    }
    Ok(root)
}

/// Error for a token that appears where only an operator, `)` or the end of
/// the expression may follow. `open` is the position of an unclosed `(`.
fn trailing(t: &Token, open: Option<usize>) -> ParseError {
    let message = match (&t.kind, open) {
        (Tok::Field(segs), _) if segs.len() == 1 && segs[0] == "and" => {
            "unexpected 'and': use '&&' to combine conditions".to_owned()
        }
        (Tok::Field(segs), _) if segs.len() == 1 && segs[0] == "or" => {
            "unexpected 'or': use '||' to combine conditions".to_owned()
        }
        (Tok::RParen, None) => "unexpected ')' without a matching '('".to_owned(),
        (_, Some(open)) => format!(
            "expected ')' to close the '(' at position {open}, found {}",
            t.kind.describe()
        ),
        (kind, None) => format!(
            "unexpected {}; expected '&&', '||' or the end of the expression",
            kind.describe()
        ),
    };
    ParseError::new(t.pos, message)
}

fn starts_value(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Field(_)
            | Tok::User(_)
            | Tok::Now
            | Tok::Str(_)
            | Tok::Num(_)
            | Tok::True
            | Tok::False
            | Tok::Null
            | Tok::LBracket
    )
}

fn starts_condition(t: &Tok) -> bool {
    starts_value(t) || matches!(t, Tok::Not | Tok::LParen)
}

fn cmp_op(t: &Tok) -> Option<Op> {
    Some(match t {
        Tok::Eq { .. } => Op::Eq,
        Tok::Ne => Op::Ne,
        Tok::Lt => Op::Lt,
        Tok::Le => Op::Le,
        Tok::Gt => Op::Gt,
        Tok::Ge => Op::Ge,
        Tok::In => Op::In,
        Tok::Tilde => Op::Contains,
        _ => return None,
    })
}

/// Appends `node` to a chain, splicing in a nested chain of the same kind so
/// `(a && b) && c` becomes one three-item `And`.
fn push_flat(items: &mut Vec<Node>, node: Node, is_and: bool) {
    match node {
        Node::And(inner) if is_and => items.extend(inner),
        Node::Or(inner) if !is_and => items.extend(inner),
        other => items.push(other),
    }
}

struct Parser {
    tokens: Vec<Token>,
    idx: usize,
    eof: Token,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.idx).unwrap_or(&self.eof)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.idx < self.tokens.len() {
            self.idx += 1;
        }
        token
    }

    fn enter(&self, depth: usize, pos: usize) -> Result<usize, ParseError> {
        if depth >= MAX_DEPTH {
            return Err(ParseError::new(
                pos,
                format!(
                    "expression is nested too deeply (more than {MAX_DEPTH} levels of \
                     parentheses, '!' and lists)"
                ),
            ));
        }
        Ok(depth + 1)
    }

    fn expect_condition(&self, after: &str) -> Result<(), ParseError> {
        let t = self.peek();
        if starts_condition(&t.kind) {
            return Ok(());
        }
        Err(ParseError::new(
            t.pos,
            format!(
                "expected a condition after '{after}', found {}",
                t.kind.describe()
            ),
        ))
    }

    fn or(&mut self, depth: usize) -> Result<Node, ParseError> {
        self.chain(depth, false)
    }

    /// One `||` chain (`is_and == false`) or `&&` chain (`is_and == true`).
    fn chain(&mut self, depth: usize, is_and: bool) -> Result<Node, ParseError> {
        let (sep, sym) = if is_and {
            (Tok::And, "&&")
        } else {
            (Tok::Or, "||")
        };
        let operand = |p: &mut Self| {
            if is_and {
                p.unary(depth)
            } else {
                p.chain(depth, true)
            }
        };
        let first = operand(self)?;
        if self.peek().kind != sep {
            return Ok(first);
        }
        let mut items = Vec::new();
        push_flat(&mut items, first, is_and);
        while self.peek().kind == sep {
            self.next();
            self.expect_condition(sym)?;
            let node = operand(self)?;
            push_flat(&mut items, node, is_and);
        }
        Ok(if is_and {
            Node::And(items)
        } else {
            Node::Or(items)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, ParseError> {
        if self.peek().kind != Tok::Not {
            return self.comparison(depth);
        }
        let bang = self.next();
        let depth = self.enter(depth, bang.pos)?;
        self.expect_condition("!")?;
        Ok(Node::Not(Box::new(self.unary(depth)?)))
    }

    fn comparison(&mut self, depth: usize) -> Result<Node, ParseError> {
        let lhs = self.primary(depth)?;
        let Some(op) = cmp_op(&self.peek().kind) else {
            return Ok(lhs);
        };
        let op_token = self.next();
        let sym = op_token.kind.symbol().unwrap_or("?");
        let Node::Value(lhs) = lhs else {
            return Err(ParseError::new(
                op_token.pos,
                format!(
                    "cannot apply '{sym}' to a condition; only fields and values can be compared"
                ),
            ));
        };
        let next = self.peek();
        if !starts_value(&next.kind) && next.kind != Tok::LParen {
            return Err(ParseError::new(
                next.pos,
                format!(
                    "expected a value after '{sym}', found {}",
                    next.kind.describe()
                ),
            ));
        }
        let rhs_pos = next.pos;
        let Node::Value(rhs) = self.primary(depth)? else {
            return Err(ParseError::new(
                rhs_pos,
                format!("expected a value after '{sym}', found a condition in parentheses"),
            ));
        };
        let next = self.peek();
        if cmp_op(&next.kind).is_some() {
            return Err(ParseError::new(
                next.pos,
                "comparisons cannot be chained; combine them with '&&' or '||'",
            ));
        }
        Ok(Node::Cmp { op, lhs, rhs })
    }

    fn primary(&mut self, depth: usize) -> Result<Node, ParseError> {
        if self.peek().kind != Tok::LParen {
            return Ok(Node::Value(self.operand(depth)?));
        }
        let open = self.next();
        let depth = self.enter(depth, open.pos)?;
        self.expect_condition("(")?;
        let inner = self.or(depth)?;
        let close = self.peek();
        if close.kind != Tok::RParen {
            return Err(trailing(close, Some(open.pos)));
        }
        self.next();
        Ok(inner)
    }

    fn operand(&mut self, depth: usize) -> Result<Operand, ParseError> {
        let t = self.next();
        Ok(match t.kind {
            Tok::Field(segments) => Operand::Field(Path::new(segments)),
            Tok::User(attr) => Operand::User(attr),
            Tok::Now => Operand::Now,
            Tok::Str(s) => Operand::Lit(Value::String(s)),
            Tok::Num(n) => Operand::Lit(Value::Number(n)),
            Tok::True => Operand::Lit(Value::Bool(true)),
            Tok::False => Operand::Lit(Value::Bool(false)),
            Tok::Null => Operand::Lit(Value::Null),
            Tok::LBracket => self.list(depth, t.pos)?,
            ref kind => {
                let message = match (cmp_op(kind), kind.symbol()) {
                    (Some(_), Some(sym)) => format!("expected a field or value before '{sym}'"),
                    _ => format!("unexpected {}", kind.describe()),
                };
                return Err(ParseError::new(t.pos, message));
            }
        })
    }

    fn list(&mut self, depth: usize, open: usize) -> Result<Operand, ParseError> {
        let depth = self.enter(depth, open)?;
        if self.peek().kind == Tok::RBracket {
            self.next();
            return Ok(Operand::Lit(Value::Array(Vec::new())));
        }
        let mut operands = Vec::new();
        loop {
            let t = self.peek();
            if let Tok::Field(segs) = &t.kind {
                return Err(ParseError::new(
                    t.pos,
                    format!(
                        "list elements must be literals, @user or @now; field '{}' is not allowed",
                        segs.join(".")
                    ),
                ));
            }
            if !starts_value(&t.kind) {
                let what = if operands.is_empty() {
                    "a list element or ']'"
                } else {
                    "a list element after ','"
                };
                return Err(ParseError::new(
                    t.pos,
                    format!("expected {what}, found {}", t.kind.describe()),
                ));
            }
            if operands.len() == MAX_LIST_LEN {
                return Err(ParseError::new(
                    t.pos,
                    format!("list has too many elements (the limit is {MAX_LIST_LEN})"),
                ));
            }
            operands.push(self.operand(depth)?);
            let t = self.next();
            match t.kind {
                Tok::Comma => {}
                Tok::RBracket => break,
                ref kind => {
                    return Err(ParseError::new(
                        t.pos,
                        format!(
                            "expected ',' or ']' in the list started at position {open}, found {}",
                            kind.describe()
                        ),
                    ))
                }
            }
        }
        // Constant lists become one JSON array so evaluation borrows it as is.
        if !operands.iter().all(|o| matches!(o, Operand::Lit(_))) {
            return Ok(Operand::List(operands));
        }
        let items = operands
            .into_iter()
            .filter_map(|o| match o {
                Operand::Lit(v) => Some(v),
                _ => None,
            })
            .collect();
        Ok(Operand::Lit(Value::Array(items)))
    }
}
