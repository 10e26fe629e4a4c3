//! The data of a `gpt train` run: read, split into train and validation, and
//! encoded with the run's tokenizer.

use super::Settings;
use crate::data::batch::truncated;
use crate::data::dataset::Dataset;
use crate::data::docs::{read_documents, read_text, split_documents};
use crate::data::sft::{encode_file, fit, Format, Template};
use crate::data::tokens::TokenFile;
use crate::model::ChatSpec;
use crate::tokenizer::{CharTokenizer, Tokenizer};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// The training tokens of a `gpt prepare` directory.
const TRAIN_BIN: &str = "train.bin";

/// The data of a run, encoded, with its tokenizer.
pub struct Prepared {
    pub tok: Tokenizer,
    pub train: Dataset,
    pub val: Dataset,
    /// Tokens per training row.
    pub n_ctx: usize,
    /// Training documents as text (character models), to tell new samples from copies.
    pub train_docs: Vec<String>,
    pub what: String,
    /// Notes and warnings about the data, printed unless `--quiet`.
    pub notes: Vec<String>,
    /// Instruction tuning: what its samples and run directory need.
    pub sft: Option<SftData>,
}

/// What an instruction-tuning run keeps beside its data.
pub struct SftData {
    /// Prompts of validation records (training ones without validation), to show answers to.
    pub prompts: Vec<Vec<u32>>,
    /// The ids that end a reply.
    pub stop_ids: Vec<u32>,
    /// The chat template the prompts were rendered with, saved with the run.
    pub template: Option<String>,
}

/// Reads and encodes the run's data with `tok` (a checkpoint's), or, without
/// one, with the tokenizer `s.tokenizer` names (char: built from the
/// training documents). `max_ctx` is the model's context when it exists
/// already; `chat`, its chat template and stop ids (instruction tuning).
pub fn prepare(
    s: &Settings,
    tok: Option<Tokenizer>,
    max_ctx: Option<usize>,
    chat: Option<&ChatSpec>,
) -> Result<Prepared> {
    if let Some(c) = &s.classify {
        return prepare_labelled(s, c, tok.context("a classifier trains from a model (--init)")?, max_ctx);
    }
    if let Some(sft) = &s.sft {
        let tok = tok.context("instruction tuning trains a model (--init)")?;
        return prepare_sft(
            s,
            sft,
            tok,
            chat.context("instruction tuning needs the model's chat settings")?,
            max_ctx,
        );
    }
    let tok = match tok {
        Some(t) => t,
        None => match s.tokenizer.as_str() {
            "char" => return prepare_chars(s, None, max_ctx),
            "gpt2" => Tokenizer::gpt2(),
            dir => match super::super::tokenize::named_tokenizer("--tokenizer", dir, "char (one per character), ")? {
                t @ Tokenizer::Bpe(_) => t,
                Tokenizer::Char(_) => {
                    bail!("--tokenizer {dir} holds a character tokenizer; give gpt2 or a BPE directory")
                }
            },
        },
    };
    match tok {
        Tokenizer::Char(t) => prepare_chars(s, Some(t), max_ctx),
        bpe => prepare_bpe(s, bpe, max_ctx),
    }
}

/// Whether `path` is a directory made by `gpt prepare` (it holds train.bin).
pub fn is_prepared(path: &Path) -> bool {
    path.join(TRAIN_BIN).is_file()
}

/// The `--tokenizer` that made the token files of `dir` (from `gpt prepare`):
/// gpt2, or an error asking for the directory of a tokenizer of its own.
pub fn prepared_tokenizer(dir: &Path) -> Result<String> {
    let file = TokenFile::open(&dir.join(TRAIN_BIN))?;
    let h = file.header();
    if h.tokenizer_fingerprint == Tokenizer::gpt2().fingerprint() {
        return Ok("gpt2".to_string());
    }
    bail!(
        "--data {}: its token files were made with a tokenizer of their own ({:?}, {} ids): give that \
         tokenizer's directory with --tokenizer DIR",
        dir.display(),
        h.tokenizer_name,
        h.vocab_size
    )
}

/// The context length of a run: `--n-ctx` or `default`, at most the model's.
fn context(s: &Settings, default: usize, max_ctx: Option<usize>) -> Result<usize> {
    let max = max_ctx.unwrap_or(usize::MAX);
    match s.n_ctx {
        Some(n) if n > max => bail!(
            "--n-ctx {n} is larger than the checkpoint's n_ctx {max} (its position embeddings cover {max} positions); give --n-ctx {max} or less"
        ),
        Some(n) => Ok(n),
        None => Ok(default.min(max)),
    }
}

/// Character model: one document per line, split into train and validation documents.
fn prepare_chars(s: &Settings, tok: Option<CharTokenizer>, max_ctx: Option<usize>) -> Result<Prepared> {
    if let Some(dir) = s.data.as_deref().filter(|d| d.is_dir()) {
        bail!(
            "--data {}: a character model trains on a text file (one document per line), not a directory",
            dir.display()
        );
    }
    let docs = read_documents(s.data.as_deref())?;
    let (train_docs, val_docs) = split_documents(docs, s.val_fraction, s.seed);
    let tok = tok.unwrap_or_else(|| CharTokenizer::from_docs(&train_docs));
    let mut notes = Vec::new();
    // Documents with characters the tokenizer lacks (validation, or a checkpoint's) are skipped.
    let mut encode = |docs: &[String], what: &str| -> Vec<Vec<u32>> {
        let ids: Vec<Vec<u32>> = docs.iter().filter_map(|d| tok.encode_doc(d).ok()).collect();
        if ids.len() < docs.len() {
            notes.push(format!(
                "note: {} {what} documents use characters the tokenizer lacks and are skipped",
                docs.len() - ids.len()
            ));
        }
        ids
    };
    let (train_ids, val_ids) = (encode(&train_docs, "training"), encode(&val_docs, "validation"));
    ensure!(
        !train_ids.is_empty(),
        "no training document can be encoded with the checkpoint's characters"
    );
    ensure!(
        !val_docs.is_empty() || s.val_fraction == 0.0,
        "the validation split is empty: give more documents, raise --val-fraction, or pass --val-fraction 0 to train without validation"
    );
    let longest = train_ids.iter().chain(&val_ids).map(|d| d.len() - 1).max().unwrap_or(1);
    let n_ctx = context(s, longest.min(256), max_ctx)?;
    let cut = truncated(&train_ids, n_ctx) + truncated(&val_ids, n_ctx);
    if cut > 0 {
        notes.push(format!("warning: {cut} documents are longer than n_ctx = {n_ctx} tokens and are cut to their first {n_ctx} (raise --n-ctx to keep them whole)"));
    }
    let what = format!("{} documents ({} for validation)", train_ids.len(), val_ids.len());
    Ok(Prepared {
        tok: Tokenizer::Char(tok),
        train: Dataset::Docs(train_ids),
        val: Dataset::Docs(val_ids),
        n_ctx,
        train_docs,
        what,
        notes,
        sft: None,
    })
}

/// BPE model: a text file tokenized on the fly (its last `--val-fraction` of
/// tokens held out), or a directory from `gpt prepare` (train.bin, val.bin).
fn prepare_bpe(s: &Settings, tok: Tokenizer, max_ctx: Option<usize>) -> Result<Prepared> {
    // `val_wanted`: a val.bin exists or --val-fraction is above 0.
    ensure!(
        s.pack,
        "--no-pack: BPE data is one stream of tokens cut into windows, with no documents to keep apart; drop --no-pack"
    );
    let mut notes = Vec::new();
    let (train, val, val_wanted) = match s.data.as_deref() {
        Some(dir) if is_prepared(dir) => {
            let load = |name: &str| -> Result<Vec<u32>> {
                let path = dir.join(name);
                let f = TokenFile::open(&path)?;
                f.check_tokenizer(&tok)
                    .and_then(|()| f.ids())
                    .with_context(|| format!("reading {}", path.display()))
            };
            let wanted = dir.join("val.bin").is_file();
            let val = if wanted {
                load("val.bin")?
            } else {
                notes.push(format!(
                    "note: {} has no val.bin: only training loss is reported",
                    dir.display()
                ));
                Vec::new()
            };
            (load(TRAIN_BIN)?, val, wanted)
        }
        path => {
            let text = match path {
                Some(p) => read_text(p)?,
                None => crate::data::docs::NAMES.to_string(),
            };
            let mut ids = tok.encode(&text)?;
            let n_val = (ids.len() as f64 * s.val_fraction).round() as usize;
            let val = ids.split_off(ids.len() - n_val.min(ids.len()));
            (ids, val, s.val_fraction > 0.0)
        }
    };
    ensure!(
        train.len() >= 2,
        "the training data has {} tokens: nothing to learn from",
        train.len()
    );
    let n_ctx = context(s, 256.min(train.len() - 1), max_ctx)?;
    ensure!(
        !val_wanted || val.len() > n_ctx,
        "the validation split has {} tokens, fewer than one window of n_ctx + 1 = {}: give more data, raise --val-fraction, lower --n-ctx, or pass --val-fraction 0 to train without validation",
        val.len(),
        n_ctx + 1
    );
    let what = format!(
        "{} tokens ({} for validation, {} tokenizer)",
        train.len(),
        val.len(),
        tok.name()
    );
    Ok(Prepared {
        tok,
        train: Dataset::Stream(train),
        val: Dataset::Stream(val),
        n_ctx,
        train_docs: Vec::new(),
        what,
        notes,
        sft: None,
    })
}

/// Classification: labelled texts from `--data` (and `--val-data`, or
/// `--val-fraction` of `--data` held out), each encoded as its ids then its
/// label's index; texts longer than the context are cut to their first
/// `n_ctx` tokens, with a warning.
fn prepare_labelled(s: &Settings, c: &super::Classify, tok: Tokenizer, max_ctx: Option<usize>) -> Result<Prepared> {
    use crate::data::labelled::{check_labels, read_examples, Example};
    let path = s.data.as_deref().context("--task classify needs --data FILE")?;
    let mut train = read_examples(path, true)?;
    check_labels(path, &train, &c.labels)?;
    let val = match &c.val_data {
        Some(v) => {
            let val = read_examples(v, true)?;
            check_labels(v, &val, &c.labels)?;
            val.into_iter().map(|e| (v.as_path(), e)).collect()
        }
        None => {
            // A seeded shuffle, the last --val-fraction held out (as documents are).
            let (t, v) = split_documents(std::mem::take(&mut train), s.val_fraction, s.seed);
            train = t;
            v.into_iter().map(|e| (path, e)).collect::<Vec<(&Path, Example)>>()
        }
    };
    let encode = |file: &Path, e: &Example| -> Result<Vec<u32>> {
        let ids = tok
            .encode(&e.text)
            .with_context(|| format!("{}:{}: the text cannot be encoded", file.display(), e.line))?;
        ensure!(
            !ids.is_empty(),
            "{}:{}: the text encodes to no tokens",
            file.display(),
            e.line
        );
        Ok(ids)
    };
    let mut train_ids = train.iter().map(|e| encode(path, e)).collect::<Result<Vec<_>>>()?;
    let mut val_ids = val.iter().map(|(f, e)| encode(f, e)).collect::<Result<Vec<_>>>()?;
    let longest = train_ids.iter().chain(&val_ids).map(Vec::len).max().unwrap_or(1);
    let n_ctx = context(s, longest, max_ctx)?;
    let mut notes = Vec::new();
    let cut = train_ids.iter().chain(&val_ids).filter(|d| d.len() > n_ctx).count();
    if cut > 0 {
        notes.push(format!(
            "warning: {cut} texts are longer than n_ctx = {n_ctx} tokens and are cut to their first {n_ctx}"
        ));
    }
    let label = |e: &Example| {
        c.labels
            .iter()
            .position(|l| Some(l) == e.label.as_ref())
            .expect("checked") as u32
    };
    let with_labels = |ids: &mut Vec<Vec<u32>>, labels: Vec<u32>| {
        for (d, l) in ids.iter_mut().zip(labels) {
            d.truncate(n_ctx);
            d.push(l);
        }
    };
    with_labels(&mut train_ids, train.iter().map(label).collect());
    with_labels(&mut val_ids, val.iter().map(|(_, e)| label(e)).collect());
    let what = format!(
        "{} texts ({} for validation) labelled {}",
        train_ids.len(),
        val_ids.len(),
        c.labels.join(", ")
    );
    Ok(Prepared {
        tok,
        train: Dataset::Labelled(train_ids),
        val: Dataset::Labelled(val_ids),
        n_ctx,
        train_docs: Vec::new(),
        what,
        notes,
        sft: None,
    })
}

/// How instruction records become ids for a model with `chat`: its chat
/// template where it has one, else the Alpaca prompt format; and a note
/// saying which.
pub(crate) fn sft_format(chat: &ChatSpec, tok: &Tokenizer) -> Result<(Format, String)> {
    let stop = chat
        .stop_ids
        .first()
        .and_then(|&id| tok.decode(&[id]).ok())
        .unwrap_or_default();
    let (template, note) = match &chat.template {
        Some(_) => (
            Some(Template {
                template: chat.compile()?,
                bos_token: chat.bos_token.clone(),
                eos_token: chat.eos_token.clone(),
            }),
            format!(
                "note: prompts rendered with the model's chat template (from {}); each reply is learnt up to its end of turn",
                chat.template_source
            ),
        ),
        None => (
            None,
            format!("note: prompts in the Alpaca format (the model has no chat template); each response is learnt with the {stop:?} that ends it"),
        ),
    };
    let format = Format {
        template,
        stop_ids: chat.stop_ids.clone(),
    };
    Ok((format, note))
}

/// Instruction tuning: records from `--data` (and `--val-data`, or
/// `--val-fraction` of `--data` held out), each its prompt then its
/// response, only the response (and its end) scored.
fn prepare_sft(
    s: &Settings,
    sft: &super::Sft,
    tok: Tokenizer,
    chat: &ChatSpec,
    max_ctx: Option<usize>,
) -> Result<Prepared> {
    let path = s.data.as_deref().context(
        "--task sft needs --data FILE: a JSON array or JSON lines of {\"instruction\", \"input\", \"output\"}, or chat JSON lines {\"messages\": [...]}",
    )?;
    let (format, note) = sft_format(chat, &tok)?;
    let mut train = encode_file(path, &tok, &format)?;
    let (val, val_path) = match &sft.val_data {
        Some(v) => (encode_file(v, &tok, &format)?, v.as_path()),
        None => {
            let (t, v) = split_documents(std::mem::take(&mut train), s.val_fraction, s.seed);
            train = t;
            (v, path)
        }
    };
    ensure!(
        !val.is_empty() || (s.val_fraction == 0.0 && sft.val_data.is_none()),
        "the validation split is empty: give more records, raise --val-fraction, give --val-data FILE, or pass --val-fraction 0 to train without validation"
    );
    let longest = train.iter().chain(&val).map(|e| e.ids.len() - 1).max().unwrap_or(1);
    let n_ctx = context(s, longest.max(1), max_ctx)?;
    let mut notes = vec![note];
    let shown: Vec<Vec<u32>> = val.iter().chain(&train).take(3).map(|e| e.prompt().to_vec()).collect();
    let train = fit(path, train, n_ctx, &mut notes);
    let val = fit(val_path, val, n_ctx, &mut notes);
    ensure!(
        !train.is_empty(),
        "no training record leaves room for its response in the context of {n_ctx} tokens"
    );
    let responses: usize = train
        .iter()
        .map(|(_, m)| m.iter().skip(1).filter(|&&s| s).count())
        .sum();
    let what = format!(
        "{} records ({} for validation; {responses} training response tokens)",
        train.len(),
        val.len()
    );
    Ok(Prepared {
        tok,
        train: Dataset::Masked(train),
        val: Dataset::Masked(val),
        n_ctx,
        train_docs: Vec::new(),
        what,
        notes,
        sft: Some(SftData {
            prompts: shown,
            stop_ids: format.stop_ids,
            template: chat.template.clone(),
        }),
    })
}
