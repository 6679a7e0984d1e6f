"""English glosses of what a message in another language asks for, for the classifier.

Most shipped examples are English; support mail often is not. The words block of the model
(:func:`~.classify._feature_union`) reads each text through :func:`glossed`, which adds the
English gloss of every phrase of :data:`GLOSSARY` the text holds, so "Könnten Sie einen
Dunkelmodus einbauen?" shares the features of "could you add …" with the English examples.

The list covers German, Spanish, Portuguese, Polish, Italian, French and Dutch: written by
hand, a few phrases per intent (asking, reporting a failure, wanting documentation, thanks,
being away). Phrases that are also common English words are left out, so English text is not
glossed (one with a rare English word, such as "hay", may be). Adding a language is adding
its phrases to the patterns; measure it with ``benchmarks/classify.py --dev``.
"""

from __future__ import annotations

import re

__all__ = ["GLOSSARY", "glossed"]

GLOSSARY: dict[str, str] = {
    "doesn't work broken": "funktioniert nicht|geht nicht|klappt nicht|no funciona|não funciona|"
    "nao funciona|nie działa|non funziona|ne fonctionne pas|ne marche pas|werkt niet",
    "error": r"fehler\w*|fehlermeldung|erro|errores?|błąd\w*|błęd\w*|errore|erreur\w*|foutmelding",
    "since the update": "seit (dem|der) (update|aktualisierung)|desde la (última )?actualización|"
    "desde a (última )?atualização|od (ostatniej )?aktualizacji|dall'aggiornamento|"
    "depuis la mise à jour",
    "bug crash": r"absturz\w*|stürzt\w*|se cuelga|se bloquea|trava|travando|zawiesza|si blocca|"
    "plante",
    "is there": "gibt es|hay|existe|há (algum|alguma|um|uma)|czy (jest|są|istnieje)|c'è|ci sono|"
    "y a-t-il|il y a|est-ce qu'il y a",
    "could you": "könnten sie|könnt ihr|können sie|podrían|podrías|pueden|poderiam|podem|podiam|"
    "czy moglibyście|czy możecie|czy można|potreste|potete|pourriez-vous|pourriez vous|"
    "pouvez-vous|kunnen jullie|zou het mogelijk",
    "would be great feature": "wäre (es )?(toll|super|schön|gut|praktisch|hilfreich)|"
    "sería (genial|útil|bueno)|seria (ótimo|legal|útil|bom)|"
    "byłoby (super|świetnie|fajnie|dobrze)|sarebbe (utile|bello|fantastico)|"
    "ce serait (bien|génial|utile)|wäre es möglich|sería posible|seria possível|"
    "sarebbe possibile|serait-il possible",
    "add": "hinzufügen|einbauen|einführen|ergänzen|añadir|agregar|incluir|adicionar|acrescentar|"
    "dodać|dodanie|aggiungere|ajouter|toevoegen",
    "plan roadmap": "geplant|planen sie|planean|planejam|planujecie|planowane|prevedete|"
    "prévoyez|prévu",
    "option": "möglichkeit|opción|opção|opcja|opzione|possibilité",
    "how can i": "wie kann ich|wie können wir|cómo puedo|como puedo|cómo se|como posso|"
    "como faço|jak mogę|jak można|come posso|come si|comment puis-je|comment faire|hoe kan ik",
    "documentation guide article": r"anleitung\w*|handbuch|dokumentation|doku|documentación|"
    r"documentação|instrukcj\w*|dokumentacj\w*|poradnik|guida|documentazione|artikel|"
    "artículo|artigo|artykuł|articolo|manuale|manuales|manuais",
    "thanks": r"danke\w*|vielen dank|gracias|obrigad[oa]|dziękuję|dzięki|grazie|merci|bedankt",
    "price plan": r"preis\w*|rabatt|precio|descuento|preço|desconto|cena|rabat|prezzo|sconto|"
    "prix|remise",
    "invoice": r"rechnung\w*|factura\w*|fatura\w*|faktur\w*|fattur\w*|facture\w*",
    "account cancel": r"kündig\w*|cancelar|anular|anulować|rezygn\w*|disdire|annullare|résilier|"
    "annuler|opzeggen",
    "out of office": r"abwesend|außer haus|urlaub|vacaciones|férias|urlop\w*|ferie|congé\w*",
    "wrong": r"falsch\w*|incorrect[oa]s?|errad[oa]s?|błędn\w*|sbagliat\w*|incorrecte\w*|"
    r"erroné\w*|verkeerd",
    "missing": r"fehlt|fehlen|falta|faltan|brak\w*|manca|mancano|manque",
    "why": "warum|wieso|por qué|por que|porque|dlaczego|perché|pourquoi|waarom",
    "where": "wo|dónde|onde|gdzie|dove|où|waar",
    "is it possible": "ist es möglich|es posible|é possível|e possível|czy to możliwe|"
    "czy jest możliwe|è possibile|est-il possible|est-ce possible|is het mogelijk",
    "i would like": "ich möchte|ich würde gerne|wir möchten|wir würden gerne|quisiera|"
    "me gustaría|nos gustaría|quisiéramos|gostaria|gostaríamos|chciałbym|chciałabym|"
    "chcielibyśmy|vorrei|vorremmo|je voudrais|nous voudrions|ik wil graag|wij willen graag",
    "please": "bitte|por favor|proszę|per favore|s'il vous plaît|svp|alstublieft",
    "we need": "wir brauchen|brauchen wir|necesitamos|precisamos|potrzebujemy|abbiamo bisogno|"
    "nous avons besoin|wij hebben .{0,20}nodig",
    "can i": "kann ich|können wir|puedo|podemos|posso|czy mogę|czy możemy|possiamo|puis-je|"
    "pouvons-nous|kan ik",
    "help": r"hilfe|ayuda|ajuda|pomoc\w*|aiuto|aide|hulp",
    "still": "immer noch|noch immer|todavía|todavia|sigue|ainda|nadal|wciąż|ancora|toujours|"
    "nog steeds",
    "since": "seit|desde|depuis|sinds",
    "login password": r"anmeld\w*|passwort|kennwort|contraseña|iniciar sesión|senha|hasło|"
    r"zalogować|logowan\w*|accedere|mot de passe|wachtwoord",
}
"""Each English gloss, and the phrases (a regular expression, matched as whole words, ignoring
case) that it glosses."""

_PATTERNS = [
    (re.compile(rf"\b(?:{pattern})(?!\w)", re.IGNORECASE), gloss)
    for gloss, pattern in GLOSSARY.items()
]


def glossed(text: str) -> str:
    """``text`` in lower case, then a line of the English glosses (:data:`GLOSSARY`) of the
    non-English phrases in it, each once, in glossary order."""
    glosses = [gloss for pattern, gloss in _PATTERNS if pattern.search(text)]
    return text.lower() + "\n" + " ".join(glosses) if glosses else text.lower()
