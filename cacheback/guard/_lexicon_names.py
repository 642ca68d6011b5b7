"""Words for what a question is about or asks for: languages, answer formats and styles,
places and products, and the spellings that name the same thing."""

from __future__ import annotations

_NATURAL_LANGUAGES = frozenset(
    """
    english french spanish german italian portuguese russian chinese mandarin cantonese
    japanese korean arabic hindi bengali urdu turkish dutch swedish norwegian danish
    finnish polish greek hebrew persian farsi thai vietnamese indonesian malay tagalog
    tamil telugu marathi punjabi gujarati kannada malayalam ukrainian czech romanian
    hungarian latin swahili catalan croatian serbian bulgarian slovak irish welsh
    """.split()
)
# Programming languages; the ambiguous ones (go, c, r, swift, rust ...) need a capital.
_PROGRAMMING_LANGUAGES = {
    "python": "python", "python3": "python", "java": "java", "javascript": "javascript",
    "js": "javascript", "typescript": "typescript", "ts": "typescript", "c++": "cpp",
    "cpp": "cpp", "c#": "csharp", "csharp": "csharp", "f#": "fsharp", "golang": "go",
    "kotlin": "kotlin", "scala": "scala", "php": "php", "perl": "perl", "haskell": "haskell",
    "matlab": "matlab", "lua": "lua", "sql": "sql", "mysql": "mysql", "postgresql": "postgres",
    "postgres": "postgres", "sqlite": "sqlite", "bash": "bash", "zsh": "zsh",
    "powershell": "powershell", "fortran": "fortran", "cobol": "cobol", "erlang": "erlang",
    "clojure": "clojure", "ocaml": "ocaml", "objective-c": "objc", "vba": "vba",
    "solidity": "solidity", "groovy": "groovy", "wasm": "wasm",
    "webassembly": "wasm", "nodejs": "node", "node": "node", "node.js": "node",
}
_CAPITALISED_LANGUAGES = {"go": "go", "c": "c", "r": "r", "swift": "swift", "rust": "rust",
                          "ruby": "ruby", "julia": "julia", "dart": "dart",
                          "elixir": "elixir", "scheme": "scheme", "crystal": "crystal",
                          "zig": "zig", "nim": "nim", "shell": "shell", "d": "d",
                          "assembly": "assembly"}

# File and data formats: asking for one is asking for a different answer.
_FORMATS = {
    "json": "json", "yaml": "yaml", "yml": "yaml", "xml": "xml", "csv": "csv", "tsv": "tsv",
    "markdown": "markdown", "latex": "latex", "toml": "toml", "pdf": "pdf", "docx": "docx",
    "xlsx": "xlsx", "parquet": "parquet", "protobuf": "protobuf", "svg": "svg", "png": "png",
    "jpg": "jpg", "jpeg": "jpg", "gif": "gif", "mp3": "mp3", "mp4": "mp4", "wav": "wav",
    "html": "html", "mermaid": "mermaid", "uml": "uml",
}
# Shapes of an answer that are also ordinary topics ("recover a deleted email"): they count
# only when asked for ("as a table", "write a haiku").
_SHAPES = {
    "table": "table", "tables": "table", "tabular": "table", "bullet": "bullets",
    "bullets": "bullets", "bulleted": "bullets", "haiku": "haiku", "haikus": "haiku",
    "poem": "poem", "poems": "poem", "limerick": "limerick", "sonnet": "sonnet",
    "essay": "essay", "essays": "essay", "tweet": "tweet", "email": "email",
    "emails": "email", "story": "story", "stories": "story", "song": "song",
    "songs": "song", "script": "script", "diagram": "diagram", "flowchart": "flowchart",
    "word": "word", "excel": "excel", "regex": "regex", "paragraph": "paragraph",
    "sentence": "sentence", "letter": "letter", "speech": "speech",
    "slide": "slides", "slides": "slides", "summary": "summary", "outline": "outline",
}
# "as a table", "in JSON", "into a bulleted list", "write a haiku", "draft me an email".
_SHAPE_LEADS = frozenset({"as", "in"})
_SHAPE_FILLERS = frozenset({"a", "an", "me", "us", "short", "brief", "long", "numbered",
                            "bulleted", "simple", "one", "single", "quick", "formal",
                            "markdown", "nice", "funny"})
# Verbs that ask for a piece of writing ("write a haiku", "give me a table"); "create a
# table" in SQL or "make a list of URLs" are topics, not requests for a shape.
_GENERATIVE_VERBS = frozenset(
    """
    write draft compose give rewrite reformat format output return print show present
    answer reply respond summarize summarise translate
    """.split()
)
_STYLES = {
    "brief": "brief", "briefly": "brief", "short": "brief", "shortly": "brief",
    "concise": "brief", "concisely": "brief", "summary": "brief", "summarize": "brief",
    "summarise": "brief", "tldr": "brief", "detailed": "detailed", "detail": "detailed",
    "depth": "detailed", "thorough": "detailed", "thoroughly": "detailed",
    "comprehensive": "detailed", "elaborate": "detailed", "formal": "formal",
    "formally": "formal", "informal": "informal", "casual": "informal",
    "casually": "informal", "funny": "funny", "humorous": "funny", "serious": "serious",
    "simple": "simple", "eli5": "simple", "beginner": "simple", "beginners": "simple",
    "advanced": "advanced", "expert": "advanced", "experts": "advanced",
}
_OPPOSITE_STYLES = frozenset({("brief", "detailed"), ("formal", "informal"),
                              ("funny", "serious"), ("simple", "advanced")})

# Places and products that users often type in lower case; capitalised names are found by
# shape, these by name.
_GAZETTEER = frozenset(
    """
    afghanistan albania algeria argentina armenia australia austria azerbaijan bangladesh
    belarus belgium bolivia brazil bulgaria cambodia cameroon canada chile china colombia
    croatia cuba cyprus denmark ecuador egypt england estonia ethiopia finland france
    georgia germany ghana greece hungary iceland india indonesia iran iraq ireland israel
    italy jamaica japan jordan kazakhstan kenya korea kuwait laos latvia lebanon libya
    lithuania luxembourg malaysia mexico mongolia morocco nepal netherlands nigeria norway
    pakistan peru philippines poland portugal qatar romania russia scotland serbia
    singapore slovakia slovenia somalia spain sudan sweden switzerland syria taiwan
    tanzania thailand tunisia turkey uganda ukraine uruguay usa uk uae venezuela vietnam
    wales yemen zimbabwe america europe asia africa antarctica oceania
    paris london berlin madrid rome tokyo beijing shanghai delhi mumbai bangalore
    bengaluru chennai kolkata hyderabad pune moscow sydney melbourne toronto vancouver
    montreal chicago boston seattle houston dallas austin denver miami atlanta
    philadelphia phoenix amsterdam brussels vienna prague warsaw budapest lisbon dublin
    stockholm oslo copenhagen helsinki athens istanbul cairo dubai nairobi lagos seoul
    bangkok jakarta manila hanoi singapore karachi lahore dhaka kathmandu tehran baghdad
    riyadh jerusalem barcelona milan munich hamburg frankfurt zurich geneva lyon
    california texas florida ohio michigan virginia washington oregon nevada arizona
    colorado utah georgia alabama alaska hawaii kentucky louisiana maine maryland
    massachusetts minnesota mississippi missouri montana nebraska oklahoma pennsylvania
    tennessee wisconsin iowa kansas idaho wyoming connecticut delaware vermont
    windows linux ubuntu debian fedora centos macos mac ios android iphone ipad chrome
    firefox safari edge aws azure gcp docker kubernetes react vue angular svelte django
    flask fastapi rails laravel spring numpy pandas pytorch tensorflow keras sklearn
    excel word powerpoint photoshop gmail outlook slack zoom teams github gitlab
    bitbucket jenkins terraform ansible nginx apache redis mongodb kafka spark hadoop
    postgres mysql sqlite oracle firebase supabase heroku vercel netlify wordpress
    shopify stripe paypal amazon google microsoft apple meta facebook instagram twitter
    tiktok youtube netflix spotify uber airbnb tesla openai anthropic nvidia intel amd
    samsung huawei xiaomi sony nintendo xbox playstation
    """.split()
)

# Names in the gazetteer that are also everyday words ("cutting-edge", "a word", "spring
# water"): a name only when capitalised.
_COMMON_WORD_NAMES = frozenset(
    """
    edge word excel teams zoom slack spring chrome safari apple amazon oracle meta spark
    windows turkey jordan react angular rails flask phoenix mac outlook georgia chile
    """.split()
)

# Acronyms of common nouns: written in capitals, but no name ("the URL of the file").
_COMMON_ACRONYMS = frozenset(
    "url urls uri api apis cpu gpu ram pc faq ui cli sdk ide usb tv diy".split()
)

_ALIASES = {
    "us": "usa", "u.s.": "usa", "u.s": "usa", "united states": "usa", "america": "usa",
    "uk": "britain", "u.k.": "britain", "united kingdom": "britain", "great britain":
    "britain", "nyc": "new york", "sf": "san francisco", "la": "los angeles",
    "js": "javascript", "ts": "typescript", "k8s": "kubernetes", "tf": "tensorflow",
    "postgresql": "postgres", "golang": "go", "py": "python", "mac": "macos", "osx": "macos",
    "bengaluru": "bangalore", "bombay": "mumbai", "madras": "chennai", "calcutta": "kolkata",
    "peking": "beijing",
}

# A country and the adjective or language named after it are the same subject.
_DEMONYMS = {
    "chinese": "china", "french": "france", "spanish": "spain", "german": "germany",
    "japanese": "japan", "indian": "india", "american": "usa", "americans": "usa",
    "british": "britain", "english": "england", "italian": "italy", "russian": "russia",
    "korean": "korea", "canadian": "canada", "mexican": "mexico", "brazilian": "brazil",
    "turkish": "turkey", "greek": "greece", "dutch": "netherlands", "swedish": "sweden",
    "polish": "poland", "portuguese": "portugal", "irish": "ireland", "thai": "thailand",
    "vietnamese": "vietnam", "indonesian": "indonesia", "australian": "australia",
    "pakistani": "pakistan", "egyptian": "egypt", "israeli": "israel", "iranian": "iran",
    "ukrainian": "ukraine", "european": "europe", "african": "africa", "asian": "asia",
    "norwegian": "norway", "danish": "denmark", "finnish": "finland", "swiss": "switzerland",
    "austrian": "austria", "belgian": "belgium", "argentinian": "argentina",
    "chilean": "chile", "peruvian": "peru", "colombian": "colombia", "nigerian": "nigeria",
    "kenyan": "kenya", "filipino": "philippines", "malaysian": "malaysia",
    "singaporean": "singapore", "bangladeshi": "bangladesh", "nepali": "nepal",
    "scottish": "scotland", "welsh": "wales", "hungarian": "hungary", "czech": "czechia",
    "romanian": "romania", "persian": "iran", "arabic": "arabia", "hebrew": "israel",
}
