//! The lexer: turns agent-file text into tokens, one at a time, skipping whitespace and
//! comments (`// ...`, `# ...`, `/* ... */`).

use std::fmt;

use super::Location;

/// A lexing or parsing error, before it is turned into a [`super::Diagnostic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub loc: Location,
    pub msg: String,
}

impl SyntaxError {
    pub fn new(loc: Location, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            loc,
            msg: msg.into(),
        }
    }
}

pub(crate) type PResult<T> = Result<T, SyntaxError>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A name: a letter or `_`, then letters, digits and `_`.
    Ident(String),
    /// A string literal, escapes resolved.
    Str(String),
    /// A number as written (`512`, `-3`, `1.5`, `1.0.0`) and the unit glued to it (`30s` has
    /// text `30` and suffix `s`; most numbers have an empty suffix).
    Num {
        text: String,
        suffix: String,
    },
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Colon,
    Comma,
    Semi,
    Eof,
}

impl fmt::Display for Tok {
    /// How a token is named in "expected X, found Y" messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(_) => f.write_str("a string"),
            Tok::Num { text, suffix } => write!(f, "number `{text}{suffix}`"),
            Tok::LBrace => f.write_str("`{`"),
            Tok::RBrace => f.write_str("`}`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::Colon => f.write_str("`:`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Semi => f.write_str("`;`"),
            Tok::Eof => f.write_str("end of file"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    /// Where the token starts.
    pub loc: Location,
}

pub(crate) struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    /// Just past the last token read: where "end of file" is reported, so that an error about a
    /// missing `}` points at the end of the last line with something on it.
    last_end: Location,
}

impl Lexer {
    pub fn new(src: &str) -> Lexer {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            line: 1,
            column: 1,
            last_end: Location { line: 1, column: 1 },
        }
    }

    fn here(&self) -> Location {
        Location {
            line: self.line,
            column: self.column,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_char_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> PResult<()> {
        loop {
            match self.peek_char() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') if self.peek_char_at(1) == Some('/') => self.skip_line(),
                Some('/') if self.peek_char_at(1) == Some('*') => {
                    let start = self.here();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(SyntaxError::new(
                                    start,
                                    "unterminated block comment: `/*` without a closing `*/`",
                                ))
                            }
                            Some('*') if self.peek_char() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek_char() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// The next token; at the end of the input, `Eof` (again and again).
    pub fn next_token(&mut self) -> PResult<Token> {
        self.skip_trivia()?;
        let loc = self.here();
        let Some(c) = self.peek_char() else {
            return Ok(Token {
                tok: Tok::Eof,
                loc: self.last_end,
            });
        };
        let tok = match c {
            '{' | '}' | '[' | ']' | '(' | ')' | ':' | ',' | ';' => {
                self.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ':' => Tok::Colon,
                    ',' => Tok::Comma,
                    _ => Tok::Semi,
                }
            }
            '"' => self.string(loc)?,
            c if c.is_ascii_digit() => self.number(),
            '-' if self.peek_char_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            c if is_ident_start(c) => Tok::Ident(self.word()),
            '=' => {
                return Err(SyntaxError::new(
                    loc,
                    "unexpected `=`; write `key: value`, with a colon",
                ))
            }
            '\'' => {
                return Err(SyntaxError::new(
                    loc,
                    "unexpected `'`; strings are written in double quotes",
                ))
            }
            c => {
                return Err(SyntaxError::new(
                    loc,
                    format!("unexpected character `{}`", c.escape_debug()),
                ))
            }
        };
        self.last_end = self.here();
        Ok(Token { tok, loc })
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek_char() {
            if !is_ident_continue(c) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    /// `-`? digits (`.` digits)*, then any letters glued to it as the unit.
    fn number(&mut self) -> Tok {
        let mut text = String::new();
        if self.peek_char() == Some('-') {
            text.push('-');
            self.bump();
        }
        loop {
            while let Some(c) = self.peek_char().filter(char::is_ascii_digit) {
                text.push(c);
                self.bump();
            }
            let dot_digit = self.peek_char() == Some('.')
                && self.peek_char_at(1).is_some_and(|c| c.is_ascii_digit());
            if !dot_digit {
                break;
            }
            text.push('.');
            self.bump();
        }
        let suffix = if self.peek_char().is_some_and(is_ident_start) {
            self.word()
        } else {
            String::new()
        };
        Tok::Num { text, suffix }
    }

    /// A double-quoted string with the escapes `\"`, `\\`, `\n` and `\t`. A string ends on its
    /// line: a line break before the closing quote is an unterminated string.
    fn string(&mut self, start: Location) -> PResult<Tok> {
        self.bump(); // the opening quote
        let unterminated =
            || SyntaxError::new(start, "unterminated string: no closing `\"` on this line");
        let mut s = String::new();
        loop {
            let esc_loc = self.here();
            match self.peek_char() {
                None | Some('\n') => return Err(unterminated()),
                Some('"') => {
                    self.bump();
                    return Ok(Tok::Str(s));
                }
                Some('\\') => {
                    self.bump();
                    match self.peek_char() {
                        None | Some('\n') => return Err(unterminated()),
                        Some(e) => {
                            let resolved = match e {
                                '"' => '"',
                                '\\' => '\\',
                                'n' => '\n',
                                't' => '\t',
                                other => {
                                    return Err(SyntaxError::new(
                                        esc_loc,
                                        format!(
                                            "unknown escape `\\{}` in string (known: \\\" \\\\ \\n \\t)",
                                            other.escape_debug()
                                        ),
                                    ))
                                }
                            };
                            self.bump();
                            s.push(resolved);
                        }
                    }
                }
                Some(c) => {
                    self.bump();
                    s.push(c);
                }
            }
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}
