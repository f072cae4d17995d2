//! Tokenizer. Positions are char offsets rather than byte offsets because they
//! are shown to people editing rules, whose editors count characters.

use serde_json::Number;

use super::ast::UserAttr;
use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Field(Vec<String>),
    User(Option<UserAttr>),
    Now,
    Str(String),
    Num(Number),
    True,
    False,
    Null,
    In,
    /// `double` remembers `==` so messages quote what the author wrote.
    Eq {
        double: bool,
    },
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Eof,
}

impl Tok {
    pub(super) fn symbol(&self) -> Option<&'static str> {
        Some(match self {
            Tok::In => "in",
            Tok::Eq { double: false } => "=",
            Tok::Eq { double: true } => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Tilde => "~",
            Tok::And => "&&",
            Tok::Or => "||",
            Tok::Not => "!",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            _ => return None,
        })
    }

    /// A short human description for error messages ("field 'a.b'", "')'").
    pub(super) fn describe(&self) -> String {
        if let Some(sym) = self.symbol() {
            return format!("'{sym}'");
        }
        match self {
            Tok::Field(segs) => format!("field '{}'", segs.join(".")),
            Tok::User(None) => "@user".to_owned(),
            Tok::User(Some(attr)) => format!("@user.{}", attr.name()),
            Tok::Now => "@now".to_owned(),
            Tok::Str(s) => {
                // Long strings would drown the actual complaint.
                let mut shown: String = s.chars().take(24).collect();
                if shown.len() < s.len() {
                    shown.push('…');
                }
                format!("string '{shown}'")
            }
            Tok::Num(n) => format!("number {n}"),
            _ => "the end of the expression".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Tok,
    pub(super) pos: usize,
}

pub(super) struct Tokens {
    pub(super) list: Vec<Token>,
    pub(super) eof: Token,
}

pub(super) fn tokenize(src: &str) -> Result<Tokens, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        i: 0,
    };
    let mut list = Vec::new();
    loop {
        let token = lexer.next_token()?;
        if token.kind == Tok::Eof {
            return Ok(Tokens { list, eof: token });
        }
        list.push(token);
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

const KEYWORDS: [&str; 4] = ["true", "false", "null", "in"];

struct Lexer<'s> {
    chars: &'s [char],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let pos = self.i;
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: Tok::Eof,
                pos,
            });
        };
        let kind = match c {
            '\'' | '"' => self.string(c)?,
            '-' | '0'..='9' => self.number()?,
            '@' => self.variable()?,
            c if is_ident_start(c) => self.word()?,
            _ => {
                self.i += 1;
                self.punct(c, pos)?
            }
        };
        Ok(Token { kind, pos })
    }

    /// Operators and punctuation; `c` has already been consumed.
    fn punct(&mut self, c: char, pos: usize) -> Result<Tok, ParseError> {
        Ok(match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '~' => Tok::Tilde,
            '=' => Tok::Eq {
                double: self.eat('='),
            },
            '!' if self.eat('=') => Tok::Ne,
            '!' => Tok::Not,
            '<' if self.eat('=') => Tok::Le,
            '<' => Tok::Lt,
            '>' if self.eat('=') => Tok::Ge,
            '>' => Tok::Gt,
            '&' if self.eat('&') => Tok::And,
            '|' if self.eat('|') => Tok::Or,
            '&' | '|' => {
                return Err(ParseError::new(
                    pos,
                    format!("expected '{c}{c}', found a single '{c}'"),
                ))
            }
            other => {
                return Err(ParseError::new(
                    pos,
                    format!("unexpected character '{other}'"),
                ))
            }
        })
    }

    fn string(&mut self, quote: char) -> Result<Tok, ParseError> {
        let start = self.i;
        self.i += 1;
        let unterminated = || {
            ParseError::new(
                start,
                format!("unterminated string (missing closing {quote})"),
            )
        };
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or_else(unterminated)?;
            self.i += 1;
            if c == quote {
                return Ok(Tok::Str(out));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escaped = self.peek().ok_or_else(unterminated)?;
            self.i += 1;
            out.push(match escaped {
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                'n' => '\n',
                't' => '\t',
                other => {
                    return Err(ParseError::new(
                        self.i - 2,
                        format!(
                            "unknown escape '\\{other}' in string; \
                             supported escapes are \\\\, \\', \\\", \\n and \\t"
                        ),
                    ))
                }
            });
        }
    }

    fn digits(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i > start
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.i;
        if self.eat('-') && !self.digits() {
            return Err(ParseError::new(start, "expected a number after '-'"));
        }
        self.digits();
        let mut integral = true;
        if self.eat('.') {
            integral = false;
            if !self.digits() {
                return Err(ParseError::new(
                    self.i,
                    "expected a digit after the decimal point",
                ));
            }
        }
        if self.eat('e') || self.eat('E') {
            integral = false;
            if !self.eat('+') {
                self.eat('-');
            }
            if !self.digits() {
                return Err(ParseError::new(self.i, "expected a digit in the exponent"));
            }
        }
        // `3abc` or `1.2.3` is almost certainly a typo, not two tokens.
        if self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
            while self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
                self.i += 1;
            }
            let text: String = self.chars[start..self.i].iter().collect();
            return Err(ParseError::new(start, format!("invalid number '{text}'")));
        }
        let text: String = self.chars[start..self.i].iter().collect();
        if integral {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Tok::Num(v.into()));
            }
            if let Ok(v) = text.parse::<u64>() {
                return Ok(Tok::Num(v.into()));
            }
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Tok::Num)
            .ok_or_else(|| ParseError::new(start, format!("number {text} is out of range")))
    }

    fn segment(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident_char) {
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    fn variable(&mut self) -> Result<Tok, ParseError> {
        let start = self.i;
        self.i += 1;
        if !self.peek().is_some_and(is_ident_start) {
            return Err(ParseError::new(
                start,
                "expected a variable name after '@': @user or @now",
            ));
        }
        let name = self.segment();
        let no_attributes = |lexer: &Self, what: &str| {
            ParseError::new(lexer.i, format!("{what} has no attributes"))
        };
        match name.as_str() {
            "now" if self.peek() == Some('.') => Err(no_attributes(self, "@now")),
            "now" => Ok(Tok::Now),
            "user" if self.eat('.') => {
                let attr_pos = self.i;
                let attr = self.segment();
                if attr.is_empty() {
                    return Err(ParseError::new(
                        attr_pos,
                        "expected an attribute after '@user.': id, email, roles, groups or tenant",
                    ));
                }
                let Some(found) = UserAttr::from_name(&attr) else {
                    return Err(ParseError::new(
                        start,
                        format!(
                            "unknown attribute @user.{attr}, expected id, email, roles, groups or tenant"
                        ),
                    ));
                };
                if self.peek() == Some('.') {
                    return Err(no_attributes(self, &format!("@user.{attr}")));
                }
                Ok(Tok::User(Some(found)))
            }
            "user" => Ok(Tok::User(None)),
            other => Err(ParseError::new(
                start,
                format!("unknown variable @{other}, expected @user or @now"),
            )),
        }
    }

    fn word(&mut self) -> Result<Tok, ParseError> {
        let start = self.i;
        let mut segments = vec![self.segment()];
        while self.eat('.') {
            if !self.peek().is_some_and(is_ident_start) {
                return Err(ParseError::new(self.i, "expected a field name after '.'"));
            }
            segments.push(self.segment());
        }
        let first = segments[0].as_str();
        if segments.len() == 1 {
            match first {
                "true" => return Ok(Tok::True),
                "false" => return Ok(Tok::False),
                "null" => return Ok(Tok::Null),
                "in" => return Ok(Tok::In),
                _ => {}
            }
        } else if KEYWORDS.contains(&first) {
            return Err(ParseError::new(
                start,
                format!("'{first}' is a keyword and cannot start a field path"),
            ));
        }
        Ok(Tok::Field(segments))
    }
}
