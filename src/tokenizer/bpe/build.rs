//! Building a [`Bpe`] from its parts: the lookup tables, the pieces that
//! encode to one token, the fingerprint.

use super::added::AddedTokens;
use super::hash::{FastMap, Fnv64};
use super::merge::{MergeTable, Scratch};
use super::piece_map::PieceMap;
use super::pre::PreTokenizer;
use super::{AddedToken, Bpe, SpecialTokens, ENDOFTEXT, NO_ID};
use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;

/// What a byte-level BPE tokenizer is made of.
pub(super) struct Parts {
    pub name: String,
    /// The bytes of each id.
    pub tokens: Vec<Vec<u8>>,
    /// Whether each id is a token of the BPE model, which merges (and, with
    /// `ignore_merges`, whole pieces) can give; an added token alone is not.
    pub in_model: Vec<bool>,
    /// Merges in rank order, as pairs of ids; their results are found by bytes.
    pub merges: Vec<(u32, u32)>,
    pub ignore_merges: bool,
    /// See [`Bpe`]'s `unk`.
    pub unk: Option<(u32, bool)>,
    pub pre: PreTokenizer,
    pub added: Vec<AddedToken>,
    /// Ids the post-processor puts before and after a text's.
    pub template: (Vec<u32>, Vec<u32>),
}

impl Parts {
    /// GPT-2's pre-tokenizer, every token in the model, nothing added.
    pub fn new(name: &str, tokens: Vec<Vec<u8>>, merges: Vec<(u32, u32)>) -> Parts {
        Parts {
            name: name.to_string(),
            in_model: vec![true; tokens.len()],
            tokens,
            merges,
            ignore_merges: false,
            unk: None,
            pre: PreTokenizer::default(),
            added: Vec::new(),
            template: (Vec::new(), Vec::new()),
        }
    }

    pub fn build(self) -> Result<Bpe> {
        let Parts {
            name, tokens, in_model, ..
        } = &self;
        let n = tokens.len();
        ensure!(
            n > 0 && n < u32::MAX as usize,
            "a vocabulary needs 1 to 2^32 - 2 tokens, not {n}"
        );
        let total: usize = tokens.iter().map(Vec::len).sum();
        ensure!(
            total < u32::MAX as usize,
            "the tokens hold {total} bytes, more than 4 GiB"
        );
        let mut by_bytes: FastMap<&[u8], u32> = FastMap::default();
        for (id, t) in tokens.iter().enumerate().rev().filter(|&(id, _)| in_model[id]) {
            by_bytes.insert(t, id as u32);
        }
        let mut byte_ids = [NO_ID; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = by_bytes.get(&[b as u8][..]).copied().unwrap_or(NO_ID);
        }
        let mut table = MergeTable::default();
        for (rank, &(left, right)) in self.merges.iter().enumerate() {
            let get = |id: u32| {
                tokens
                    .get(id as usize)
                    .with_context(|| format!("merge {rank} uses id {id}, outside the vocabulary"))
            };
            let merged = [get(left)?.as_slice(), get(right)?].concat();
            let Some(&id) = by_bytes.get(merged.as_slice()) else {
                bail!(
                    "merge {rank} makes {:?}, which is not in the vocabulary",
                    String::from_utf8_lossy(&merged)
                );
            };
            table.push(left, right, id);
        }
        let outside = |id: u32| (id as usize) >= n;
        if let Some(t) = self.added.iter().find(|t| outside(t.id)) {
            bail!(
                "added token {:?} has id {}, outside the vocabulary ({n} ids)",
                t.content,
                t.id
            );
        }
        if let Some(&id) = self.template.0.iter().chain(&self.template.1).find(|&&id| outside(id)) {
            bail!("the post-processor adds id {id}, outside the vocabulary ({n} ids)");
        }
        if let Some((unk, _)) = self.unk.filter(|&(unk, _)| outside(unk)) {
            bail!("the unknown token id {unk} is outside the vocabulary ({n} ids)");
        }
        let endoftext = self.added.iter().find(|t| t.content == ENDOFTEXT).map(|t| t.id);
        let mut bpe = Bpe {
            name: name.clone(),
            bytes: tokens.concat(),
            offsets: Some(0)
                .into_iter()
                .chain(tokens.iter().scan(0u32, |end, t| {
                    *end += t.len() as u32;
                    Some(*end)
                }))
                .collect(),
            missing_bytes: byte_ids.contains(&NO_ID),
            byte_ids: Box::new(byte_ids),
            unk: self.unk,
            merges: table,
            whole: PieceMap::default(),
            ignore_merges: self.ignore_merges,
            pre: self.pre.clone(),
            added: AddedTokens::new(self.added.clone())?,
            template: self.template.clone(),
            specials: SpecialTokens::default(),
            endoftext,
            fingerprint: 0,
        };
        bpe.whole = bpe.reachable_tokens(tokens, in_model);
        bpe.fingerprint = bpe.compute_fingerprint();
        Ok(bpe)
    }
}

impl Bpe {
    /// Tokens that the merge loop turns their own bytes into: for those, a
    /// piece lookup gives the same id as merging (all of GPT-2's).
    fn reachable_tokens(&self, tokens: &[Vec<u8>], in_model: &[bool]) -> PieceMap<u32> {
        let reachable: Vec<u32> = (0..tokens.len() as u32)
            .into_par_iter()
            .filter(|&id| tokens[id as usize].len() > 1 && in_model[id as usize])
            .map_init(
                || (Vec::new(), Scratch::default()),
                |(ids, scratch), id| {
                    if self.ignore_merges {
                        return Some(id);
                    }
                    self.byte_level_ids(&tokens[id as usize], ids);
                    self.merges.apply(ids, scratch);
                    (ids[..] == [id]).then_some(id)
                },
            )
            .flatten()
            .collect();
        let mut whole = PieceMap::default();
        // Lowest id first wins, as `by_bytes` in `Parts::build`.
        for id in reachable.into_iter().rev() {
            whole.insert(&tokens[id as usize], id);
        }
        whole
    }

    /// What encoding depends on beyond vocabulary and merges, empty for a
    /// GPT-2-style tokenizer (so their fingerprints stay as they were).
    pub(super) fn encoding_extras(&self) -> String {
        let mut s = String::new();
        if self.pre != PreTokenizer::default() {
            s += &format!("pre {};", self.pre.describe());
        }
        let tokens = self.added.tokens();
        let only_endoftext = match tokens {
            [] => true,
            [t] => Some(t.id) == self.endoftext && t.special && !t.lstrip && !t.rstrip,
            _ => false,
        };
        if !only_endoftext {
            for t in tokens {
                let flags = [t.special, t.lstrip, t.rstrip, t.normalized].map(|f| f as u8);
                s += &format!("added {} {:?} {flags:?};", t.id, t.content);
            }
        }
        if self.ignore_merges {
            s += "ignore_merges;";
        }
        if let Some((unk, fuse)) = self.unk {
            s += &format!("unk {unk} {fuse};");
        }
        s
    }

    fn compute_fingerprint(&self) -> u64 {
        let mut h = Fnv64::default();
        h.update(&(self.vocab_size() as u32).to_le_bytes());
        for id in 0..self.vocab_size() as u32 {
            let t = self.token_bytes(id).expect("id in vocabulary");
            h.update(&(t.len() as u32).to_le_bytes());
            h.update(t);
        }
        for &(left, right, _) in self.merges.merges() {
            h.update(&left.to_le_bytes());
            h.update(&right.to_le_bytes());
        }
        h.update(&self.endoftext.map_or(u32::MAX, |id| id).to_le_bytes());
        h.update(self.encoding_extras().as_bytes());
        h.finish()
    }
}
