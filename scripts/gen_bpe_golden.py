#!/usr/bin/env python3
"""Regenerates tests/golden/bpe_golden.json: GPT-2 token ids from tiktoken.

The reference is tiktoken (PyPI) with GPT-2's ranks built from the repo's own
data/gpt2/encoder.json + vocab.bpe (no download) and GPT-2's original
pre-tokenizer pattern. The strings are hand-written edge cases, a sentence in
many scripts, and seeded random mixes, so the file is reproducible.

    python scripts/gen_bpe_golden.py          # writes tests/golden/bpe_golden.json
"""
import json
import random
import sys
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "bpe_golden.json"
CORPUS = ROOT / "data" / "tinyshakespeare.txt"
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def gpt2_encoding(pattern=GPT2_PATTERN):
    """tiktoken's gpt2 encoding, built from the repo's vocabulary files."""
    ranks = data_gym_to_mergeable_bpe_ranks(
        str(ROOT / "data/gpt2/vocab.bpe"), str(ROOT / "data/gpt2/encoder.json")
    )
    return tiktoken.Encoding(
        "gpt2-local", pat_str=pattern, mergeable_ranks=ranks,
        special_tokens={EOT: 50256}, explicit_n_vocab=50257,
    )


def fnv1a64_ids(ids):
    """FNV-1a 64 over the ids as little-endian u32 bytes (as the Rust test)."""
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# One sentence (or word list) per script / writing system.
SCRIPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis.",
    "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg.",
    "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío, añoraba a su querido cachorro.",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép",
    "Şoförle çabucak güvenli bir yolculuk yapın.",
    "Þú ættir að vera á Íslandi.",
    "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ґанок, їжак, є, і — українська.",
    "Բարեւ աշխարհ, ինչպե՞ս ես։",
    "გამარჯობა მსოფლიო",
    "שלום עולם! זה מבחן.",
    "مرحبا بالعالم، هذا اختبار ١٢٣.",
    "سلام دنیا، حال شما چطور است؟ ۱۲۳",
    "ہیلو دنیا",
    "ܫܠܡܐ ܥܠܡܐ",
    "ހެލޯ ވޯލްޑް",
    "नमस्ते दुनिया, आप कैसे हैं? १२३",
    "হ্যালো বিশ্ব, আপনি কেমন আছেন? ১২৩",
    "ਸਤ ਸ੍ਰੀ ਅਕਾਲ ਦੁਨੀਆ",
    "નમસ્તે વિશ્વ",
    "ନମସ୍କାର ବିଶ୍ୱ",
    "வணக்கம் உலகம் ௧௨௩",
    "హలో ప్రపంచం",
    "ಹಲೋ ವಿಶ್ವ",
    "ഹലോ ലോകം",
    "ආයුබෝවන් ලෝකය",
    "สวัสดีชาวโลก ๑๒๓",
    "ສະບາຍດີໂລກ",
    "བཀྲ་ཤིས་བདེ་ལེགས། ༡༢༣",
    "မင်္ဂလာပါ ကမ္ဘာ ၁၂၃",
    "សួស្តី​ពិភពលោក ១២៣",
    "ᠰᠠᠶᠢᠨ ᠪᠠᠶᠢᠨ᠎ᠠ ᠤᠤ",
    "안녕하세요 세계! 한국어 테스트입니다.",
    "こんにちは世界、カタカナもひらがなも。",
    "ｶﾀｶﾅ ﾃｽﾄ",
    "你好，世界！这是一个测试。",
    "繁體中文測試：龍、龜、鬱。",
    "𠀀𠀁𠀂 𪚥 𰻞𰻞麵",
    "ሰላም ልዑል",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "ᐊᐃᓐᖓᐃ ᓄᓇᕗᑦ",
    "ᚠᚢᚦᚨᚱᚲ ᚷᚹ",
    "ⰀⰁⰂ Glagolitic",
    "𐌰𐌱𐌲 Gothic 𐍈",
    "𐐀𐐁𐐂 Deseret",
    "𓀀𓀁𓀂 hieroglyphs",
    "𒀀𒀁 cuneiform",
    "ꦲꦏ꧀ꦱꦫ Javanese",
    "ᬅᬓ᭄ᬱᬭ Balinese",
    "ꯃꯤꯇꯩ ꯃꯌꯦꯛ",
    "ߒߞߏ N'Ko",
    "ⵜⴰⵎⴰⵣⵉⵖⵜ Tifinagh",
    "ᜊᜌ᜔ᜊᜌᜒᜈ᜔ Baybayin",
    "Tiếng Việt có dấu: Xin chào thế giới.",
    "Yorùbá: Ẹ kú àárọ̀",
    "Hawaiʻi ʻŌlelo",
    "Ǆemal ǅemal ǆemal ǈ ǋ",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇩🇪🇯🇵", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "❤️", "✌🏿", "🧑🏻‍💻",
    "👩‍❤️‍💋‍👨", "🤷‍♀️", "1️⃣", "#️⃣", "🫠", "🦀", "☃", "★",
]

HAND = [
    "", " ", "  ", "   ", "\n", "\n\n", "\r\n", "\r\n\r\n", "\t", "\t\t", " \t ", "a", "A", "1", ".", "'",
    "Not all heroes wear capes.",
    "Hello world", "Hello  world", "Hello   world", "hello\nworld", "hello \nworld", "hello\n world",
    "hello \n world", "trailing space ", "trailing spaces   ", " leading", "   leading spaces",
    "\tindented\n\tlines\n\t\tdeeper\n", "line one\r\nline two\r\n", "mixed\r\n\r\n\r\nends",
    "nbsp\u00a0between\u00a0words", "ideographic\u3000space\u3000here", "thin\u2009space", "em\u2003space",
    "zero\u200bwidth\u200bspace", "line\u2028separator\u2029para", "nel\u0085char", "ogham\u1680space",
    "narrow\u202fnbsp", "vertical\u000btab\u000cform feed", "\u00a0\u00a0\u00a0x", " \u00a0 \u3000 x",
    "don't", "DON'T", "Don't", "I'm", "I'M", "you're", "YOU'RE", "we've", "WE'VE", "he'll", "HE'LL",
    "she'd", "SHE'D", "it's", "IT'S", "'S", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'x", "''",
    "'''s", "rock'n'roll", "o'clock", "'sup", "'llama", "y'all'd've", "Ma'am's", "dogs' bones",
    "‘curly’ quotes’s", "it’s", "l'homme", "dell'arte",
    "1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159", "-42", "+1e10",
    "1,000,000", "0x1F600", "0b1010", "v1.2.3", "2024-01-15T12:34:56Z", "١٢٣٤٥", "१२३", "１２３", "Ⅻ ⅻ ⅷ",
    "²³¹ ½ ¾", "①②③", "𝟘𝟙𝟚 𝟏𝟐𝟑",
    "fn main() {\n    println!(\"Hello, world!\");\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "<div class=\"x\">&amp;&lt;&gt;</div>",
    "SELECT * FROM users WHERE id = 42;",
    "if x != y && z >= 3 || !w { return; }",
    "    four spaces\n        eight spaces\n",
    "https://www.example.com/path/to/page?query=1&lang=en#frag",
    "mailto:someone@example.org", "ftp://ftp.example.net/pub/file.tar.gz",
    "user@example.com, first.last+tag@sub.domain.co.uk",
    "C:\\Users\\name\\Documents\\file.txt", "/usr/local/bin/python3",
    "#hashtag @mention $100 %50 ^caret &amp *star",
    "!!!", "???", "...", "…", "—", "–", "«guillemets»", "„German“", "「括弧」", "【】",
    "e\u0301", "e\u0301\u0302\u0303", "a\u0308o\u0308u\u0308", "Z\u0351\u0352\u0353\u0354a\u0355\u0356l\u0357g\u0358o",
    "\u0915\u094d\u0937", "\u1100\u1161\u11a8", "\ufeffBOM at start", "soft\u00adhyphen",
    "\x00null\x01ctrl\x7fdel", "\x1b[31mred\x1b[0m", "\u200d\u200c", "\ufffd replacement",
    "\U0010ffff \U000e0001 \U000f0000", "\u0378 unassigned", "\uffff\ufffe",
    EOT, "a" + EOT + "b", "text " + EOT + " more", EOT + EOT, "<|endoftext", "<|endoftext|", "endoftext|>",
    "<|endoftext|>\n\nNew document", "<|ENDOFTEXT|>", "< |endoftext| >",
    "a" * 200, "ab" * 150, "x" * 1000, "supercalifragilisticexpialidocious" * 20,
    "Pneumonoultramicroscopicsilicovolcanoconiosis", "1" * 500, "!" * 300, " " * 100 + "x", "\n" * 50,
    "日本" * 200, "🦀" * 100, "aé" * 200, "abcdefghij" * 40,
]

POOL_WORDS = [
    "the", "The", "THE", "and", "of", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
    "are", "as", "with", "his", "they", "I", "at", "be", "this", "have", "from", "Shakespeare", "ROMEO",
    "JULIET", "thou", "thee", "hath", "doth", "naïve", "café", "résumé", "Straße", "Ωmega", "Москва",
    "東京", "서울", "القاهرة", "मुंबई", "กรุงเทพ", "Αθήνα", "İstanbul", "ǅ", "ﬁ", "ﬂow", "Ⅳ",
]
POOL_SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\t\t", " \t", "\u2003"]
POOL_PUNCT = [".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "[", "]", "{", "}", "-", "--", "...", "/",
              "\\", "@", "#", "$", "%", "^", "&", "*", "_", "=", "+", "<", ">", "|", "~", "`", "'s", "'t",
              "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "’"]
RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF),
          (0xE00, 0xEFF), (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x2BFF), (0x3000, 0x30FF),
          (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFB00, 0xFFFD), (0x10000, 0x1FAFF), (0x20000, 0x2A6DF),
          (0xE0000, 0xE007F), (0x0, 0x1F)]


def random_char(rng):
    lo, hi = rng.choice(RANGES)
    c = rng.randint(lo, hi)
    return chr(c) if not 0xD800 <= c <= 0xDFFF else "?"


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 25)):
        kind = rng.random()
        if kind < 0.3:
            parts.append(rng.choice(POOL_WORDS))
        elif kind < 0.5:
            parts.append(rng.choice(POOL_SPACES))
        elif kind < 0.65:
            parts.append(rng.choice(POOL_PUNCT))
        elif kind < 0.72:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif kind < 0.78:
            parts.append(rng.choice(EMOJI))
        elif kind < 0.86:
            parts.append("".join(random_char(rng) for _ in range(rng.randint(1, 8))))
        elif kind < 0.92:
            parts.append(rng.choice(SCRIPTS).split(" ")[0])
        elif kind < 0.95:
            parts.append(rng.choice("\u0300\u0301\u0308\u0327\u20dd\ufe0f\u200d"))
        else:
            parts.append(EOT)
    return "".join(parts)


def dump(golden):
    """JSON with one case per line, so diffs of the file stay readable."""
    line = lambda v: json.dumps(v, ensure_ascii=True, separators=(",", ":"))
    out = ["{"]
    for i, (key, value) in enumerate(golden.items()):
        comma = "," if i + 1 < len(golden) else ""
        if isinstance(value, list):
            out.append(f"{line(key)}:[")
            out += [line(case) + ("," if j + 1 < len(value) else "") for j, case in enumerate(value)]
            out.append("]" + comma)
        else:
            out.append(f"{line(key)}:{line(value)}{comma}")
    return "\n".join(out + ["}"]) + "\n"


def main():
    enc = gpt2_encoding()
    # tiktoken ships an equivalent, faster pattern for gpt2: both must agree.
    shipped = gpt2_encoding(r50k_pat_str)
    rng = random.Random(20240603)
    texts = HAND + SCRIPTS + EMOJI + ["".join(EMOJI)]
    texts += [rng.choice(SCRIPTS) + rng.choice(POOL_SPACES) + rng.choice(SCRIPTS) for _ in range(40)]
    texts += [random_text(rng) for _ in range(420)]
    seen, unique = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    ordinary, special = [], []
    for t in unique:
        ids = enc.encode_ordinary(t)
        assert enc.decode_bytes(ids) == t.encode("utf-8")
        assert shipped.encode_ordinary(t) == ids, f"patterns disagree on {t!r}"
        ordinary.append({"text": t, "ids": ids})
        if EOT in t:
            special.append({"text": t, "ids": enc.encode(t, allowed_special={EOT})})
    corpus = CORPUS.read_bytes().decode("utf-8")  # read_text would translate \r\n
    corpus_ids = enc.encode_ordinary(corpus)
    golden = {
        "about": "GPT-2 ids from tiktoken " + tiktoken.__version__ + " (ranks built from data/gpt2); "
                 "regenerate with scripts/gen_bpe_golden.py",
        "pattern": GPT2_PATTERN,
        "ordinary": ordinary,
        "special": special,
        "tinyshakespeare": {
            "path": "data/tinyshakespeare.txt",
            "bytes": len(corpus.encode("utf-8")),
            "tokens": len(corpus_ids),
            "fnv1a64": f"{fnv1a64_ids(corpus_ids):016x}",
            "first_ids": corpus_ids[:200],
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(golden), encoding="utf-8")
    print(f"wrote {OUT}: {len(ordinary)} ordinary + {len(special)} special cases, "
          f"tinyshakespeare {len(corpus_ids)} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
