//! Chat templates: a conversation rendered to the text a chat model was
//! trained on, with the Jinja template of its `tokenizer_config.json` (or a
//! `chat_template.jinja`, or GGUF's `tokenizer.chat_template`), as
//! `transformers`' `apply_chat_template(tokenize=False)` renders it.
//!
//! The template sees what `transformers` gives it: `messages` (a list of
//! `{role, content}`), `add_generation_prompt`, `bos_token` and `eos_token`;
//! the functions `raise_exception(msg)` and `strftime_now(format)` (UTC); the
//! filter `tojson` with Python's `json.dumps` output (`indent`,
//! `separators`, `sort_keys`, `ensure_ascii`); `break` / `continue`; Python's
//! string and dict methods (`.strip()`, `.split()`, `.startswith()`,
//! `.items()`, …). Blocks are trimmed as in `transformers` (`trim_blocks`,
//! `lstrip_blocks`). Not supported: `{% generation %}` (assistant masks).
//!
//! A template is untrusted input: rendering runs on a fuel budget, so one
//! that loops for ever or builds huge strings is an error, not a hang.

use super::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` (or any role the template knows).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).finish()
    }
}

/// Instructions (and 64-byte pieces of data made) one render may spend
/// beyond what its messages' size allows: about a second, some hundred MB.
const FUEL: u64 = 10_000_000;

/// The template's name in error messages.
const NAME: &str = "chat template";

impl ChatTemplate {
    /// Compiles `source`; a syntax error is an error naming its line.
    pub fn new(source: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // As transformers compiles templates: blocks eat the newline after
        // them and the white space before them on their line.
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Python prints booleans and None capitalised.
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool => out
                .write_str(if value.is_true() { "True" } else { "False" })
                .map_err(Error::from),
            ValueKind::None => out.write_str("None").map_err(Error::from),
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| anyhow!("{}", describe(&e)))
            .context("the chat template does not compile")?;
        Ok(ChatTemplate {
            source: source.to_string(),
            env,
        })
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation, ending with the start of an assistant turn
    /// when `add_generation_prompt` (and the template has one). A BOS or EOS
    /// text not given is undefined in the template, as in `transformers`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let ctx = minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.map_or(Value::UNDEFINED, Value::from),
            eos_token => eos_token.map_or(Value::UNDEFINED, Value::from),
            // transformers defines both, as None when not given.
            tools => Value::from(()),
            documents => Value::from(()),
        };
        // Fuel for every byte of the conversation, beyond the fixed budget.
        let bytes: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
        let mut env = self.env.clone();
        env.set_fuel(Some(FUEL.saturating_add(bytes as u64)));
        let template = env.get_template(NAME).map_err(|e| anyhow!("{}", describe(&e)))?;
        template.render(ctx).map_err(|e| {
            let text = describe(&e);
            match (e.kind(), text.strip_prefix(RAISED)) {
                (ErrorKind::InvalidOperation, Some(message)) => {
                    anyhow!("the chat template refuses the conversation: {message}")
                }
                (ErrorKind::OutOfFuel, _) => {
                    anyhow!("the chat template ran too long (more than {FUEL} steps): is it a chat template?")
                }
                _ => anyhow!("the chat template failed: {text}"),
            }
        })
    }
}

/// An error with its detail and line, in one line.
fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(detail) => detail.to_string(),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(s, " (line {line})");
    }
    s
}

/// How `raise_exception`'s errors start, to tell them from the engine's.
const RAISED: &str = "raise_exception: ";

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("{RAISED}{message}")))
}

/// `strftime_now(format)`: the current time (UTC) as C's `strftime` formats it.
fn strftime_now(format: String) -> Result<String, Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(&format, secs)
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `strftime` of the UTC time `secs` after 1970: the conversions chat
/// templates use (`%Y %y %m %d %e %j %B %b %h %A %a %u %w %H %I %M %S %p %F %T %D %R %%`).
fn strftime(format: &str, secs: i64) -> Result<String, Error> {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem / 60 % 60, rem % 60);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday (Monday = 0)
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let before: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = before[month as usize - 1] + day + i64::from(leap && month > 2);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: the format ends with %",
            ));
        };
        let month_name = MONTHS[month as usize - 1];
        let _ = match spec {
            'Y' => write!(out, "{year}"),
            'y' => write!(out, "{:02}", year.rem_euclid(100)),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'e' => write!(out, "{day:2}"),
            'j' => write!(out, "{yday:03}"),
            'B' => write!(out, "{month_name}"),
            'b' | 'h' => write!(out, "{}", &month_name[..3]),
            'A' => write!(out, "{}", DAYS[weekday]),
            'a' => write!(out, "{}", &DAYS[weekday][..3]),
            'u' => write!(out, "{}", weekday + 1),
            'w' => write!(out, "{}", (weekday + 1) % 7),
            'H' => write!(out, "{hour:02}"),
            'I' => write!(out, "{:02}", (hour + 11) % 12 + 1),
            'M' => write!(out, "{minute:02}"),
            'S' => write!(out, "{second:02}"),
            'p' => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            'F' => write!(out, "{year}-{month:02}-{day:02}"),
            'T' => write!(out, "{hour:02}:{minute:02}:{second:02}"),
            'R' => write!(out, "{hour:02}:{minute:02}"),
            'D' => write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            '%' => write!(out, "%"),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: %{other} is not supported"),
                ))
            }
        };
    }
    Ok(out)
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `tojson`, as transformers defines it: Python's `json.dumps(x,
/// ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_str(), v.as_i64()) {
            (Some(s), _) => Some(s.to_string()),
            (None, Some(n)) if (0..=64).contains(&n) => Some(" ".repeat(n as usize)),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be 0 to 64 or a string",
                ))
            }
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    kwargs.assert_all_used()?;
    let mut w = Json {
        out: String::new(),
        ensure_ascii,
        sort_keys,
        indent,
        item_sep,
        key_sep,
    };
    w.value(&value, 0)?;
    Ok(Value::from(w.out))
}

struct Json {
    out: String,
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
}

/// Nesting beyond this is refused (Python's recursion limit would stop it too).
const MAX_DEPTH: usize = 200;

impl Json {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::new(ErrorKind::InvalidOperation, "tojson: nested too deeply"));
        }
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => match (i64::try_from(v.clone()), u64::try_from(v.clone())) {
                (Ok(i), _) => write!(self.out, "{i}").unwrap_or(()),
                (_, Ok(u)) => write!(self.out, "{u}").unwrap_or(()),
                _ => write!(self.out, "{}", i128::try_from(v.clone())?).unwrap_or(()),
            },
            ValueKind::Number => self.out.push_str(&python_float(f64::try_from(v.clone())?)),
            ValueKind::String => self.string(v.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separate(i, depth);
                    self.value(item, depth + 1)?;
                }
                self.close(']', items.is_empty(), depth);
            }
            ValueKind::Map => {
                let mut entries: Vec<(String, Value)> = Vec::new();
                for key in v.try_iter()? {
                    let name = match key.kind() {
                        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                        ValueKind::None => "null".to_string(),
                        ValueKind::Bool | ValueKind::Number => {
                            let mut j = self.sub();
                            j.value(&key, depth + 1)?;
                            j.out
                        }
                        other => {
                            return Err(Error::new(
                                ErrorKind::InvalidOperation,
                                format!("tojson: keys must be strings, not {other}"),
                            ))
                        }
                    };
                    entries.push((name, v.get_item(&key)?));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.out.push('{');
                for (i, (name, item)) in entries.iter().enumerate() {
                    self.separate(i, depth);
                    self.string(name);
                    self.out.push_str(&self.key_sep.clone());
                    self.value(item, depth + 1)?;
                }
                self.close('}', entries.is_empty(), depth);
            }
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a {other} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    fn sub(&self) -> Json {
        Json {
            out: String::new(),
            ensure_ascii: self.ensure_ascii,
            sort_keys: self.sort_keys,
            indent: None,
            item_sep: String::new(),
            key_sep: String::new(),
        }
    }

    fn newline(&mut self, depth: usize) {
        if let Some(indent) = &self.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(indent);
            }
        }
    }

    fn separate(&mut self, i: usize, depth: usize) {
        if i > 0 {
            let sep = self.item_sep.clone();
            self.out.push_str(&sep);
        }
        self.newline(depth + 1);
    }

    fn close(&mut self, c: char, empty: bool, depth: usize) {
        if !empty {
            self.newline(depth);
        }
        self.out.push(c);
    }

    /// A JSON string as Python writes it.
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let _ = write!(self.out, "\\u{u:04x}");
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A float as Python's `repr` (and so `json.dumps`) writes it: the shortest
/// digits that read back, in exponent form below 1e-4 and from 1e16.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{x:e}"); // shortest round-trip digits: "-1.25e-7"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// The ids a rendered conversation is: special token texts become their
/// ids, nothing is added around (as `apply_chat_template(tokenize=True)`).
pub fn encode_chat(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    match tokenizer {
        Tokenizer::Bpe(bpe) => Ok(bpe.encode_parallel(text, true)),
        Tokenizer::Char(_) => tokenizer.encode(text),
    }
}

/// Token ids of a plain prompt (no chat template): characters after BOS, or BPE (an empty prompt starts from `<|endoftext|>`).
pub fn encode_prompt(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(text)?;
    if matches!(tok, Tokenizer::Char(_)) || ids.is_empty() {
        let Some(sep) = tok.document_separator() else {
            bail!("an empty prompt needs a start token, and this vocabulary has none");
        };
        ids.insert(0, sep);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message], gen: bool) -> Result<String> {
        ChatTemplate::new(source)?.render(messages, gen, Some("<s>"), Some("</s>"))
    }

    #[test]
    fn chatml_with_generation_prompt() {
        let t =
            "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}\
                 {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        let msgs = [Message::new("user", "Hi")];
        assert_eq!(
            render(t, &msgs, true).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(render(t, &msgs, false).unwrap(), "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn blocks_are_trimmed_as_in_transformers() {
        let t =
            "{{ bos_token }}\n  {% for m in messages %}\n    {{ m.content | trim }}\n  {% endfor %}\n{{ eos_token }}\n";
        let msgs = [Message::new("user", " a "), Message::new("assistant", "b")];
        assert_eq!(render(t, &msgs, false).unwrap(), "<s>\n    a\n    b\n</s>");
    }

    #[test]
    fn raise_exception_loop_controls_and_python_methods() {
        let t = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
                 {% if (m.role == 'user') != (loop.index0 % 2 == 1) %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}\
                 {{ m.content.strip().upper() }}|{% if m.content.startswith(' x') %}{% break %}{% endif %}{% endfor %}";
        let msgs = [
            Message::new("system", "s"),
            Message::new("user", " hi "),
            Message::new("assistant", " x yo"),
            Message::new("user", "never"),
        ];
        assert_eq!(render(t, &msgs, false).unwrap(), "HI|X YO|");
        let e = render(t, &[Message::new("user", "a"), Message::new("user", "b")], false).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("refuses") && e.contains("roles must alternate"), "{e}");
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let t = "{{ {'b': [1, 2.5, none, true], 'a': 'é\"<\\n'} | tojson }}|{{ {'b': 1, 'a': {}} | tojson(indent=2, sort_keys=true) }}|\
                 {{ [1e20, 1e-5, 0.1, 100.0] | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}";
        assert_eq!(
            render(t, &[], false).unwrap(),
            "{\"b\": [1, 2.5, null, true], \"a\": \"é\\\"<\\n\"}|{\n  \"a\": {},\n  \"b\": 1\n}|\
             [1e+20, 1e-05, 0.1, 100.0]|\"\\u00e9\"|[1,2]"
        );
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-26 13:25:09 UTC, a Friday, day 208 of a leap year.
        let secs = 1_722_000_309;
        assert_eq!(strftime("%d %b %Y", secs).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %e %j %H:%M:%S %I%p %F %%", secs).unwrap(),
            "Friday July 26 208 13:25:09 01PM 2024-07-26 %"
        );
        assert_eq!(strftime("%Y-%m-%d %a", 0).unwrap(), "1970-01-01 Thu");
        assert!(strftime("%Q", 0).is_err() && strftime("50%", 0).is_err());
        assert!(render("{{ strftime_now('%Y') }}", &[], false).unwrap().len() == 4);
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let t = "{{ true }} {{ 1 == 2 }} {{ none }} [{{ nothing }}] {{ tools }} {{ 2.5 }} {{ bos_token is defined }}";
        let got = ChatTemplate::new(t)
            .unwrap()
            .render(&[], false, None, Some("e"))
            .unwrap();
        assert_eq!(got, "True False None [] None 2.5 False");
    }

    #[test]
    fn bad_templates_are_errors() {
        let e = format!("{:#}", ChatTemplate::new("{% for m in messages %}").unwrap_err());
        assert!(e.contains("does not compile") && e.contains("line 1"), "{e}");
        let e = format!(
            "{:#}",
            render(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                &[],
                false
            )
            .unwrap_err()
        );
        assert!(e.contains("ran too long"), "{e}");
        let e = format!(
            "{:#}",
            render("{{ messages[0].content + 1 }}", &[Message::new("user", "a")], false).unwrap_err()
        );
        assert!(e.contains("chat template failed"), "{e}");
        // Recursion ends at minijinja's limit.
        let e = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", &[], false).unwrap_err();
        assert!(format!("{e:#}").contains("chat template"), "{e:#}");
    }
}
