"""Extensions at the edges of a network: MessengerIn/Out, the built-in inputs and outputs, streams to
learn from, datasets. How to write one:
docs/extensions.md."""
from ..neuron import Topology, decode_outputs as decode_outputs
from ..supervisor_tree import ChildSpec
from ._api import (BUILT_IN as BUILT_IN, Extension as Extension,
                   InputExtension as InputExtension, OutputExtension as OutputExtension,
                   extension_class as extension_class, outputs_endpoint as outputs_endpoint)
from ._bot_api import (DEFAULT_API_URL as DEFAULT_API_URL, MESSAGE_LIMIT as MESSAGE_LIMIT, TOKEN_ENV as TOKEN_ENV,
                       BotApi as BotApi, BotApiError as BotApiError, refusal as refusal)
from ._client import Client as Client
from ._datasets import (MISSING as MISSING, TASKS as TASKS, Dataset as Dataset, DatasetError as DatasetError,
                        check_learnable as check_learnable, digits as digits, load_dataset as load_dataset)
from ._messenger_in import MessengerIn as MessengerIn
from ._messenger_out import MessengerOut as MessengerOut
from ._origin import Origin as Origin
from ._parts import (EXTENSIONS as EXTENSIONS, MESSENGERS as MESSENGERS, extension_children as extension_children,
                     messenger_children as messenger_children, network_children as network_children)
from ._pipes import Pipe as Pipe
from ._samples import (InputError as InputError, Sample as Sample, TargetSpace as TargetSpace,
                       encode_text as encode_text, parse_sample as parse_sample, parse_vector as parse_vector,
                       sample_records as sample_records)
from ._scaling import (MODES as SCALE_MODES, ScaleConfig as ScaleConfig, Scaler as Scaler,
                       ScalingError as ScalingError, scale_config as scale_config)
from ._sample_input import SampleInput as SampleInput
from ._settings import ExtensionError as ExtensionError, Setting as Setting
from ._text import TextEncoder as TextEncoder, text_encoder as text_encoder
from ._stream import (RUN_BATCH as RUN_BATCH, RUN_WINDOW as RUN_WINDOW, Feed as Feed, Stream as Stream,
                      StreamProgress as StreamProgress, window_limit as window_limit)

PRELOAD = ("neurox.ext._api", "neurox.ext._messenger_in", "neurox.ext._messenger_out")
