"""texts learnt by the network through the hashing encoder, beside a linear model on the same features

The labelled texts are generated here, from a fixed seed, so the set needs no licence and every run
sees the same one: short sentences about four topics (weather, sport, food, computers), each a few
words of its topic among common words, sometimes a word of another topic, with plurals, -ing forms
and typos (a letter dropped or doubled) so that character n-grams matter as well as whole words.
The network (the diamond's shape, ``input_width`` = ``--width``, four classes) learns the training
texts prequentially from a stream of their encodings, then answers the held-out texts sent as
``text`` requests to MessengerIn, which encodes them itself with the topology's ``[text]`` table:
what it learnt and what it is asked go through the same encoder. The baselines, in the same run,
are softmax regression (numpy, the same epochs, batch and order) on the same hashed features, and on
the old UTF-8 bytes / 255.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import zmq

from ..ext import PRELOAD, Client, Dataset, Stream, TextEncoder, messenger_children
from ..neuron import Network, load_topology, messenger_in_endpoint

TOPICS = {
    "weather": "rain snow wind storm cloud sun sunny fog frost thunder forecast temperature cold warm humid "
               "breeze drizzle hail weather sky",
    "sport": "match goal team player score striker keeper league cup referee penalty season coach win "
             "draw stadium football tennis race",
    "food": "bread cheese soup recipe oven salt pepper garlic pasta dinner lunch kitchen sauce bake fry "
            "tomato onion butter flavour",
    "computers": "server software keyboard laptop screen network database code compiler memory disk "
                 "program bug update password browser cloud file kernel",
}
COMMON = ("the a an and of to in on for with at this that today again very quite after before we they "
          "it was is will be our their new old some many").split()


def _vary(word: str, rng: np.random.Generator) -> str:
    """A plural, an -ing form or a typo now and then."""
    roll = rng.random()
    if roll < 0.15:
        return word + "s"
    if roll < 0.25:
        return word + "ing"
    if roll < 0.40 and len(word) > 3:
        i = int(rng.integers(1, len(word) - 1))
        return word[:i] + word[i + 1:] if rng.random() < 0.5 else word[:i] + word[i] + word[i:]
    return word


def generate_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """``n`` labelled sentences: (texts, class indices, class names)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    vocab = {name: words.split() for name, words in TOPICS.items()}
    texts, labels = [], rng.integers(len(names), size=n)
    for label in labels:
        own = vocab[names[label]]
        words = [_vary(own[int(rng.integers(len(own)))], rng) for _ in range(int(rng.integers(2, 5)))]
        if rng.random() < 0.4:  # a word of another topic, to confuse
            other = vocab[names[(label + int(rng.integers(1, len(names)))) % len(names)]]
            words.append(_vary(other[int(rng.integers(len(other)))], rng))
        words += [COMMON[int(rng.integers(len(COMMON)))] for _ in range(int(rng.integers(3, 8)))]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, labels.astype(np.int64), names


def softmax_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       classes: int, lr: float, epochs: int, batch: int, seed: int) -> tuple[float, float]:
    """A linear model (softmax + cross-entropy, mean gradient per batch): (prequential, held-out) accuracy."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((train_x.shape[1], classes))
    bias = np.zeros(classes)
    correct = seen = 0
    for _ in range(epochs):
        order = rng.permutation(len(train_y))
        for at in range(0, len(order), batch):
            rows = order[at:at + batch]
            z = train_x[rows] @ weights + bias
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            correct += int((p.argmax(axis=1) == train_y[rows]).sum())
            seen += len(rows)
            p[np.arange(len(rows)), train_y[rows]] -= 1
            weights -= lr * train_x[rows].T @ p / len(rows)
            bias -= lr * p.mean(axis=0)
    held_out = float(((test_x @ weights + bias).argmax(axis=1) == test_y).mean())
    return correct / seen, held_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=int, default=2000, help="training texts (default: %(default)s)")
    parser.add_argument("--test", type=int, default=400, help="held-out texts (default: %(default)s)")
    parser.add_argument("--width", type=int, default=256, help="input_width: hashed positions (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="samples per packet (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="default: %(default)s")
    parser.add_argument("--linear-learning-rate", type=float, default=1.0,
                        help="of the linear baseline, whose inputs are unit vectors (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    texts, labels, names = generate_texts(args.train + args.test, args.seed)
    train_texts, test_texts = texts[:args.train], texts[args.train:]
    train_y, test_y = labels[:args.train], labels[args.train:]
    encoder = TextEncoder()
    train_x, test_x = encoder.encode_many(train_texts, args.width), encoder.encode_many(test_texts, args.width)
    lr, epochs, batch = args.learning_rate, args.epochs, args.batch
    linear_lr = args.linear_learning_rate
    linear = softmax_regression(train_x, train_y, test_x, test_y, len(names), linear_lr, epochs, batch, args.seed)
    utf8 = TextEncoder("utf8")
    linear_utf8 = softmax_regression(utf8.encode_many(train_texts, args.width), train_y,
                                     utf8.encode_many(test_texts, args.width), test_y, len(names), linear_lr, epochs,
                                     batch, args.seed)
    print(f"linear model on the same hashed features: prequential {linear[0]:.3f}, held out {linear[1]:.3f}; "
          f"on utf8 bytes: held out {linear_utf8[1]:.3f}", flush=True)
    topology = load_topology()
    topology.name, topology.input_width, topology.text = "text", args.width, encoder.table()
    topology.defaults["learning_rate"] = lr
    topology.layers[-1].settings["units"] = len(names)
    topology.output = {"decode": "label", "labels": names}
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology.validate(), data_dir, extensions=messenger_children(data_dir),
                     preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology,
                            Dataset(train_x, train_y, names), window=1, batch=batch, seed=args.seed)
            try:
                progress = stream.run(epochs, on_progress=lambda p: print(
                    f"  epoch {p.epoch + 1}: accuracy {p.accuracy:.3f}, {p.samples_per_s:,.0f} samples/s", flush=True))
            finally:
                stream.close()
            held_out, errors = ask_all(messenger_in_endpoint(network.run_dir), test_texts, names, test_y)
    print(f"network: prequential {progress.accuracy:.3f}, held out {held_out:.3f} (asked as text)", flush=True)
    return {"accuracy": round(held_out, 4), "linear_accuracy": round(linear[1], 4),
            "ratio": round(held_out / linear[1], 4) if linear[1] else None,
            "prequential_accuracy": round(progress.accuracy, 4), "linear_prequential_accuracy": round(linear[0], 4),
            "linear_utf8_accuracy": round(linear_utf8[1], 4), "chance": round(1 / len(names), 4),
            "train": args.train, "test": args.test, "width": args.width, "epochs": epochs, "batch": batch,
            "learning_rate": lr, "linear_learning_rate": linear_lr, "encoder": encoder.table(), "errors": errors,
            "lost": progress.lost}


def ask_all(endpoint: str, texts: list[str], names: list[str], truth: np.ndarray) -> tuple[float, int]:
    """Send every text to MessengerIn (no target: nothing is learnt); (accuracy of the answers, errors)."""
    client = Client(endpoint, deadline_s=60)
    try:
        ids = {client.submit(text=text): i for i, text in enumerate(texts)}
        correct = errors = 0
        while ids:
            for reply in client.results(10):
                i = ids.pop(reply["message_hash_id"])
                if not reply.get("ok"):
                    errors += 1
                elif reply.get("text") == names[truth[i]]:
                    correct += 1
    finally:
        client.close()
    return correct / len(texts), errors
