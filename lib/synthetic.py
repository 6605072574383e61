"""SYNTHETIC Portuguese multiple-choice reading comprehension, in the Cosmos QA PT schema.

Made by this repo (seeded templates), not translated from anything: each item is a short story about two
people (city, job, purchase, weekend activity) and a question whose answer is stated only in the story. The
distractors come from the same category but never occur in the story, so the options alone do not reveal the
answer: the model has to read the story and bind the option it finds there to its letter. (An earlier version also
offered the *other* person's value as a distractor; the 270M embedded model stayed at chance on it after an epoch
of CPU training, so that harder variant is kept behind `near_miss=True`.) It exists so that CPU-sized training can
demonstrate real learning; every id starts with `synthetic-` so it is never mistaken for Cosmos QA.
"""

from __future__ import annotations

import random

import datasets

from lib.data import COSMOS_PT, LETTERS, NONE_OF_THE_ABOVE, to_dataset

SPLIT_SIZES = {"train": 1000, "validation": 200, "test": 200}

NAMES = [
    ("Ana", "f"),
    ("Beatriz", "f"),
    ("Camila", "f"),
    ("Daniela", "f"),
    ("Fernanda", "f"),
    ("Gabriela", "f"),
    ("Helena", "f"),
    ("Isabela", "f"),
    ("Juliana", "f"),
    ("Larissa", "f"),
    ("Mariana", "f"),
    ("Patrícia", "f"),
    ("Renata", "f"),
    ("Sofia", "f"),
    ("Tatiane", "f"),
    ("Vitória", "f"),
    ("André", "m"),
    ("Bruno", "m"),
    ("Carlos", "m"),
    ("Diego", "m"),
    ("Eduardo", "m"),
    ("Felipe", "m"),
    ("Gustavo", "m"),
    ("Henrique", "m"),
    ("João", "m"),
    ("Lucas", "m"),
    ("Marcelo", "m"),
    ("Paulo", "m"),
    ("Rafael", "m"),
    ("Rodrigo", "m"),
    ("Thiago", "m"),
    ("Vinícius", "m"),
]
CITIES = [
    "Recife",
    "Salvador",
    "Fortaleza",
    "Belém",
    "Manaus",
    "Curitiba",
    "Florianópolis",
    "Porto Alegre",
    "Belo Horizonte",
    "Goiânia",
    "Campinas",
    "Natal",
    "São Luís",
    "Vitória",
    "Cuiabá",
    "Londrina",
    "Juiz de Fora",
    "Maceió",
    "João Pessoa",
    "Teresina",
]
JOBS = [
    ("enfermeiro", "enfermeira"),
    ("professor", "professora"),
    ("engenheiro", "engenheira"),
    ("padeiro", "padeira"),
    ("advogado", "advogada"),
    ("motorista de ônibus", "motorista de ônibus"),
    ("cozinheiro", "cozinheira"),
    ("eletricista", "eletricista"),
    ("farmacêutico", "farmacêutica"),
    ("jornalista", "jornalista"),
    ("veterinário", "veterinária"),
    ("dentista", "dentista"),
    ("carteiro", "carteira"),
    ("arquiteto", "arquiteta"),
    ("mecânico", "mecânica"),
    ("bibliotecário", "bibliotecária"),
]
ITEMS = [
    "livros",
    "cadernos",
    "vasos de planta",
    "camisetas",
    "pacotes de café",
    "caixas de morango",
    "garrafas de suco",
    "pães de queijo",
    "lápis de cor",
    "potes de doce de leite",
]
NUMBERS = ["dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove", "dez", "doze"]
ACTIVITIES = [
    "foi à praia",
    "visitou a avó",
    "jogou futebol com os amigos",
    "assistiu a um show de forró",
    "pintou a cozinha de casa",
    "fez uma trilha na serra",
    "estudou para uma prova",
    "cozinhou uma feijoada",
    "foi ao cinema",
    "andou de bicicleta no parque",
    "consertou o telhado",
    "plantou uma horta",
    "foi a um casamento",
    "organizou um bazar na igreja",
]
DAYS = ["no sábado", "no domingo", "no feriado", "na sexta-feira à noite"]
PLACES = ["na feira", "numa loja do centro", "no mercado do bairro", "pela internet"]


def _job(job: tuple[str, str], gender: str) -> str:
    return job[1] if gender == "f" else job[0]


def _item(rng: random.Random, item_id: str, near_miss: bool = False) -> dict:
    (n1, g1), (n2, g2) = rng.sample(NAMES, 2)
    c1, c2 = rng.sample(CITIES, 2)
    j1, j2 = rng.sample(JOBS, 2)
    q1, q2 = rng.sample(NUMBERS, 2)
    a1, a2 = rng.sample(ACTIVITIES, 2)
    item, day, place = rng.choice(ITEMS), rng.choice(DAYS), rng.choice(PLACES)
    friend = "a amiga" if g2 == "f" else "o amigo"
    contexto = (
        f"{n1} mora em {c1} e trabalha como {_job(j1, g1)}. {friend.capitalize()} {n2} mora em {c2}, "
        f"onde trabalha como {_job(j2, g2)}. Os dois foram às compras juntos {place}: {n1} levou {q1} "
        f"{item}, e {n2} levou {q2}. {day.capitalize()}, {n1} {a1}, enquanto {n2} {a2}."
    )
    person, other = rng.choice([(1, 2), (2, 1)])
    who = {1: n1, 2: n2}[person]
    facts = {  # question -> (answer, the other person's value, category pool)
        "cidade": (f"Em que cidade mora {who}?", {1: c1, 2: c2}, CITIES),
        "profissao": (
            f"Qual é a profissão de {who}?",
            {1: _job(j1, g1), 2: _job(j2, g2)},
            [_job(j, {1: g1, 2: g2}[person]) for j in JOBS if j not in (j1, j2)],
        ),
        "quantidade": (f"Quantos {item} {who} levou nas compras?", {1: q1, 2: q2}, NUMBERS),
        "atividade": (f"O que {who} fez {day}?", {1: a1, 2: a2}, ACTIVITIES),
    }
    pergunta, values, pool = facts[rng.choice(sorted(facts))]
    answer = values[person]
    others = rng.sample([v for v in pool if v != answer and v not in contexto], 3)  # never in the story
    options = [answer, values[other], *others[:2]] if near_miss else [answer, *others]
    rng.shuffle(options)
    roll = rng.random()
    if roll < 0.08:  # the right answer is absent: "none of the above" is correct
        options = [o for o in options if o != answer] + [NONE_OF_THE_ABOVE]
        label = LETTERS[3]
    else:
        if roll < 0.16:  # "none of the above" as a distractor
            options = [o for o in options if o != others[0]] + [NONE_OF_THE_ABOVE]
        label = LETTERS[options.index(answer)]
    capital = [o[0].upper() + o[1:] + ("" if o.endswith(".") else ".") for o in options]
    return {"id": item_id, "contexto": contexto, "pergunta": pergunta, **dict(zip(LETTERS, capital)), "Label": label}


def generate(seed: int = 0, sizes: dict[str, int] | None = None, near_miss: bool = False) -> datasets.DatasetDict:
    """Seeded SYNTHETIC splits (default: 1000 train / 200 validation / 200 test) with disjoint contexts."""
    sizes = sizes or SPLIT_SIZES
    rng = random.Random(seed)
    seen: set[str] = set()
    splits = {}
    for split, n in sizes.items():
        rows = []
        while len(rows) < n:
            row = _item(rng, f"synthetic-{split}-{len(rows) + 1:05d}", near_miss)
            if row["contexto"] not in seen:  # no story shared across (or within) splits
                seen.add(row["contexto"])
                rows.append(row)
        splits[split] = to_dataset(rows, COSMOS_PT)
    return datasets.DatasetDict(splits)
