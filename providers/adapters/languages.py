"""Language names and codes as transcription providers report them, mapped to ISO 639-1.

Whisper (OpenAI, Groq) names the language in English ("english", or "English" on Groq);
ElevenLabs gives an ISO 639-3 code ("eng"). Clients get one form whoever served them.
"""

from __future__ import annotations

# ISO 639-1, ISO 639-3, English name: the languages Whisper knows (ElevenLabs' are a subset of these).
_TABLE = """
af afr afrikaans; am amh amharic; ar ara arabic; as asm assamese; az aze azerbaijani; ba bak bashkir;
be bel belarusian; bg bul bulgarian; bn ben bengali; bo bod tibetan; br bre breton; bs bos bosnian;
ca cat catalan; cs ces czech; cy cym welsh; da dan danish; de deu german; el ell greek; en eng english;
es spa spanish; et est estonian; eu eus basque; fa fas persian; fi fin finnish; fo fao faroese;
fr fra french; gl glg galician; gu guj gujarati; ha hau hausa; haw haw hawaiian; he heb hebrew;
hi hin hindi; hr hrv croatian; ht hat haitian creole; hu hun hungarian; hy hye armenian;
id ind indonesian; is isl icelandic; it ita italian; ja jpn japanese; jv jav javanese; ka kat georgian;
kk kaz kazakh; km khm khmer; kn kan kannada; ko kor korean; la lat latin; lb ltz luxembourgish;
ln lin lingala; lo lao lao; lt lit lithuanian; lv lav latvian; mg mlg malagasy; mi mri maori;
mk mkd macedonian; ml mal malayalam; mn mon mongolian; mr mar marathi; ms msa malay; mt mlt maltese;
my mya myanmar; ne nep nepali; nl nld dutch; nn nno nynorsk; no nor norwegian; oc oci occitan;
pa pan punjabi; pl pol polish; ps pus pashto; pt por portuguese; ro ron romanian; ru rus russian;
sa san sanskrit; sd snd sindhi; si sin sinhala; sk slk slovak; sl slv slovenian; sn sna shona;
so som somali; sq sqi albanian; sr srp serbian; su sun sundanese; sv swe swedish; sw swa swahili;
ta tam tamil; te tel telugu; tg tgk tajik; th tha thai; tk tuk turkmen; tl tgl tagalog; tr tur turkish;
tt tat tatar; uk ukr ukrainian; ur urd urdu; uz uzb uzbek; vi vie vietnamese; yi yid yiddish;
yo yor yoruba; yue yue cantonese; zh zho chinese
"""

_CODES: dict[str, str] = {}
for _entry in _TABLE.replace("\n", " ").split(";"):
    _short, _long, *_name = _entry.split()
    for _alias in (_short, _long, " ".join(_name)):
        _CODES[_alias] = _short
# Other names and codes providers use for the same languages.
_CODES.update({"cmn": "zh", "zsm": "ms", "fil": "tl", "filipino": "tl", "castilian": "es", "flemish": "nl",
               "moldavian": "ro", "moldovan": "ro", "burmese": "my", "valencian": "ca", "mandarin": "zh",
               "pushto": "ps", "panjabi": "pa", "sinhalese": "si", "haitian": "ht", "letzeburgesch": "lb",
               "jw": "jv"})


def iso639_1(language: str | None) -> str | None:
    """The ISO 639-1 code of a provider's language name or code (639-3 for the few without one, such as
    Cantonese); unknown values pass through, lowercased."""
    if not language:
        return None
    lowered = language.strip().lower()
    return _CODES.get(lowered, lowered)
