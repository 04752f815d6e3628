//! YAML output as the Go CLI produces it.
//!
//! The Go CLI marshals to JSON and converts that with `ghodss/yaml` to YAML
//! (`gopkg.in/yaml.v2` 2.4.0): map keys come out sorted (yaml.v2's natural
//! order), sequences inside mappings are not indented, empty collections are
//! `{}`/`[]`, strings that would read as another type are double-quoted,
//! strings plain YAML cannot hold are single-quoted, and long scalars are
//! folded after column 80. This emitter implements those rules for the JSON
//! values the CLI prints (maps, sequences, strings, integers, booleans, null).

use serde_json::Value;

const BEST_WIDTH: usize = 80;
const BEST_INDENT: usize = 2;

/// Renders a JSON value as yaml.v2 would.
pub fn to_yaml(v: &Value) -> String {
    let mut e = Emitter::default();
    match v {
        Value::Object(m) if !m.is_empty() => e.block_map(m, 0, false),
        Value::Array(a) if !a.is_empty() => e.block_seq(a, 0),
        other => e.inline_value(other, 0),
    }
    e.out.push('\n');
    e.out
}

#[derive(Default)]
struct Emitter {
    out: String,
    column: usize,
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn newline(&mut self, indent: usize) {
        self.out.push('\n');
        self.column = 0;
        for _ in 0..indent {
            self.put(' ');
        }
    }

    /// Moves to `indent` on the current line if it is still blank up to
    /// there (right after `- `), else starts a new line.
    fn goto_indent(&mut self, indent: usize) {
        if self.out.is_empty() {
            for _ in 0..indent {
                self.put(' ');
            }
        } else if self.column < indent && self.out.ends_with(['-', ' ']) {
            while self.column < indent {
                self.put(' ');
            }
        } else {
            self.newline(indent);
        }
    }

    fn block_map(&mut self, m: &serde_json::Map<String, Value>, indent: usize, after_dash: bool) {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_by(|a, b| key_cmp(a, b));
        for (i, k) in keys.into_iter().enumerate() {
            if i == 0 && after_dash {
                while self.column < indent {
                    self.put(' ');
                }
            } else {
                self.goto_indent(indent);
            }
            self.scalar(k, indent, true);
            self.put(':');
            match &m[k.as_str()] {
                Value::Object(sub) if !sub.is_empty() => {
                    self.block_map(sub, indent + BEST_INDENT, false)
                }
                // a sequence in a mapping is "indentless"
                Value::Array(items) if !items.is_empty() => self.block_seq(items, indent),
                other => {
                    self.put(' ');
                    self.inline_value(other, indent);
                }
            }
        }
    }

    fn block_seq(&mut self, items: &[Value], indent: usize) {
        for item in items {
            self.goto_indent(indent);
            self.put('-');
            match item {
                Value::Object(m) if !m.is_empty() => self.block_map(m, indent + BEST_INDENT, true),
                Value::Array(a) if !a.is_empty() => {
                    self.put(' ');
                    self.block_seq(a, indent + BEST_INDENT)
                }
                other => {
                    self.put(' ');
                    self.inline_value(other, indent);
                }
            }
        }
    }

    /// A scalar or empty collection at the current position; `indent` is
    /// that of the enclosing block (continuation lines go 2 deeper).
    fn inline_value(&mut self, v: &Value, indent: usize) {
        match v {
            Value::Null => self.put_str("null"),
            Value::Bool(b) => self.put_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.put_str(&n.to_string()),
            Value::String(s) => self.scalar(s, indent, false),
            Value::Array(_) => self.put_str("[]"),
            Value::Object(_) => self.put_str("{}"),
        }
    }

    fn scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        let cont = indent + BEST_INDENT;
        let allow_breaks = !simple_key;
        match select_style(s, simple_key) {
            Style::Plain => self.write_folding(s, cont, allow_breaks, false),
            Style::Single => {
                self.put('\'');
                self.write_folding(s, cont, allow_breaks, true);
                self.put('\'');
            }
            Style::Double => self.write_double(s, cont, allow_breaks),
        }
    }

    /// Plain and single-quoted scalars: folds at a single space once past
    /// the best width.
    fn write_folding(&mut self, s: &str, cont: usize, allow_breaks: bool, quoted: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                let position_ok = !quoted || (i > 0 && i + 1 < chars.len());
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && position_ok
                    && !next_is_space
                {
                    self.newline(cont);
                } else {
                    self.put(' ');
                }
                spaces = true;
            } else {
                if quoted && c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                spaces = false;
            }
            i += 1;
        }
    }

    fn write_double(&mut self, s: &str, cont: usize, allow_breaks: bool) {
        self.put('"');
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let v = c as u32;
                        let s = if v <= 0xFF {
                            format!("x{v:02X}")
                        } else if v <= 0xFFFF {
                            format!("u{v:04X}")
                        } else {
                            format!("U{v:08X}")
                        };
                        self.put_str(&s);
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                {
                    self.newline(cont);
                    if chars[i + 1] == ' ' {
                        self.put('\\');
                    }
                } else {
                    self.put(' ');
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.put('"');
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_printable(c: char) -> bool {
    let v = c as u32;
    v == 0x0A
        || (0x20..=0x7E).contains(&v)
        || (0xA0..=0xD7FF).contains(&v)
        || ((0xE000..=0xFFFD).contains(&v) && v != 0xFEFF)
}

/// yaml.v2: `stringv` + `yaml_emitter_select_scalar_style`.
fn select_style(s: &str, simple_key: bool) -> Style {
    let can_use_plain = resolves_to_str(s) && !is_base60_float(s);
    let a = analyze(s);
    // Strings with line breaks would be literal blocks; we never print such
    // values, a double-quoted scalar is equivalent.
    if s.contains('\n') {
        return Style::Double;
    }
    let mut style = if can_use_plain {
        Style::Plain
    } else {
        Style::Double
    };
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    style
}

struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
}

/// libyaml's `yaml_emitter_analyze_scalar`, reduced to block context.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut special) = (false, false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let is_blank = |c: Option<&char>| matches!(c, None | Some(' ') | Some('\t'));
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace =
            is_blank(chars.get(i + 1)) || chars.get(i + 1).is_some_and(|c| is_break(*c));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == chars.len() {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t') || is_break(c);
    }
    let mut block_plain_allowed = true;
    let mut single_quoted_allowed = true;
    if leading_space || leading_break || trailing_space || trailing_break || block_indicators {
        block_plain_allowed = false;
    }
    if break_space || space_break || special {
        block_plain_allowed = false;
        single_quoted_allowed = false;
    }
    if previous_break || chars.iter().any(|c| is_break(*c)) {
        block_plain_allowed = false;
    }
    Analysis {
        block_plain_allowed,
        single_quoted_allowed,
    }
}

/// Whether yaml.v2's `resolve` would read the plain string back as a string.
fn resolves_to_str(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no",
        "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null", "Null",
        "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    let Some(first) = s.chars().next() else {
        return false; // null
    };
    let hint = match first {
        '+' | '-' => 'S',
        '0'..='9' => 'D',
        'y' | 'Y' | 'n' | 'N' | 't' | 'T' | 'f' | 'F' | 'o' | 'O' | '~' => 'M',
        '.' => '.',
        '<' => 'L',
        _ => return true,
    };
    if SPECIAL.contains(&s) {
        return false;
    }
    match hint {
        '.' => go_parse_float(s).is_none(),
        'D' | 'S' => {
            if is_timestamp(s) {
                return false;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if go_parse_int(&plain).is_some() || yaml_style_float(&plain) {
                return false;
            }
            if let Some(b) = plain
                .strip_prefix("0b")
                .or_else(|| plain.strip_prefix("-0b"))
            {
                if !b.is_empty() && b.chars().all(|c| c == '0' || c == '1') {
                    return false;
                }
            }
            true
        }
        _ => true,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint(s, 0, 64)` acceptance.
fn go_parse_int(s: &str) -> Option<()> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (digits, radix) = if let Some(r) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (r, 16)
    } else if let Some(r) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (r, 8)
    } else if let Some(r) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (r, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (&unsigned[1..], 8)
    } else {
        (unsigned, 10)
    };
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().map(|_| ())
}

fn go_parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        let g = &b[start..i];
        let ok = match g.len() {
            1 => true,
            2 => g[0] <= b'5',
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Date-only timestamps (`2006-1-2`), the form our values could take.
fn is_timestamp(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 3 || parts[0].len() != 4 {
        return false;
    }
    let num = |p: &str, max_len| -> Option<u32> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    matches!(
        (num(parts[0], 4), num(parts[1], 2), num(parts[2], 2)),
        (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d)
    )
}

/// yaml.v2's `keyList.Less` for string keys ("natural" order; non-letters
/// before letters, digit runs compared numerically).
fn key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let less = |a: &str, b: &str| -> bool {
        let ar: Vec<char> = a.chars().collect();
        let br: Vec<char> = b.chars().collect();
        for i in 0..ar.len().min(br.len()) {
            if ar[i] == br[i] {
                continue;
            }
            let al = ar[i].is_alphabetic();
            let bl = br[i].is_alphabetic();
            if al && bl {
                return ar[i] < br[i];
            }
            if al || bl {
                return bl;
            }
            let (mut an, mut bn) = (0i64, 0i64);
            if ar[i] == '0' || br[i] == '0' {
                let mut j = i;
                while j > 0 && ar[j - 1].is_ascii_digit() {
                    j -= 1;
                    if ar[j] != '0' {
                        an = 1;
                        bn = 1;
                        break;
                    }
                }
            }
            let mut ai = i;
            while ai < ar.len() && ar[ai].is_ascii_digit() {
                an = an
                    .wrapping_mul(10)
                    .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
                ai += 1;
            }
            let mut bi = i;
            while bi < br.len() && br[bi].is_ascii_digit() {
                bn = bn
                    .wrapping_mul(10)
                    .wrapping_add(i64::from(br[bi] as u8 - b'0'));
                bi += 1;
            }
            if an != bn {
                return an < bn;
            }
            if ai != bi {
                return ai < bi;
            }
            return ar[i] < br[i];
        }
        ar.len() < br.len()
    };
    if less(a, b) {
        Ordering::Less
    } else if less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_sequences_and_sorting() {
        let v = json!({
            "kind": "PrefixList",
            "metadata": {"interface_id": "vm1"},
            "status": {"code": 0, "message": "Success"},
            "items": [
                {"kind": "Prefix", "metadata": {"interface_id": "vm1", "vni": 100},
                 "spec": {"prefix": "10.0.0.0/24", "underlay_route": "fc00:1::8000:0:2"},
                 "status": {"code": 0, "message": ""}}
            ]
        });
        let want = "\
items:
- kind: Prefix
  metadata:
    interface_id: vm1
    vni: 100
  spec:
    prefix: 10.0.0.0/24
    underlay_route: fc00:1::8000:0:2
  status:
    code: 0
    message: \"\"
kind: PrefixList
metadata:
  interface_id: vm1
status:
  code: 0
  message: Success
";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn empty_collections_and_null() {
        let v = json!({"metadata": {}, "items": null, "list": [], "b": true});
        assert_eq!(
            to_yaml(&v),
            "b: true\nitems: null\nlist: []\nmetadata: {}\n"
        );
    }

    #[test]
    fn quoting_rules() {
        assert_eq!(select_style("", false), Style::Double);
        assert_eq!(select_style("true", false), Style::Double);
        assert_eq!(select_style("0", false), Style::Double);
        assert_eq!(select_style("1:20", false), Style::Double);
        assert_eq!(select_style("2024-01-02", false), Style::Double);
        assert_eq!(select_style("10.0.0.1", false), Style::Plain);
        assert_eq!(select_style("1.5", false), Style::Double);
        assert_eq!(select_style("fc00::1", false), Style::Plain);
        assert_eq!(select_style("::", false), Style::Single);
        assert_eq!(select_style("fc00:1::", false), Style::Single);
        assert_eq!(select_style("on interface: vm1", false), Style::Single);
        assert_eq!(select_style("-1", false), Style::Double);
        assert_eq!(select_style("- x", false), Style::Single);
        assert_eq!(select_style("ALREADY_EXISTS", false), Style::Plain);
        assert_eq!(select_style("a\tb", false), Style::Double);
        let v = json!({"a": "::", "b": "it's: x", "c": "x\"y"});
        assert_eq!(to_yaml(&v), "a: '::'\nb: 'it''s: x'\nc: x\"y\n");
    }

    #[test]
    fn long_scalars_fold_after_column_80() {
        let msg = "invalid argument \"10.0.0.300\" for \"--ipv4\" flag: ParseAddr(\"10.0.0.300\"): IPv4 field has value >255";
        let v = json!({"status": {"code": 1000, "message": msg}});
        let out = to_yaml(&v);
        assert_eq!(
            out,
            "status:\n  code: 1000\n  message: 'invalid argument \"10.0.0.300\" for \"--ipv4\" flag: ParseAddr(\"10.0.0.300\"):\n    IPv4 field has value >255'\n"
        );
    }

    #[test]
    fn key_order_is_natural() {
        let mut k = vec!["b10", "b9", "a_b", "ab", "Z", "a"];
        k.sort_by(|a, b| key_cmp(a, b));
        assert_eq!(k, vec!["Z", "a", "a_b", "ab", "b9", "b10"]);
    }
}
