"""``tf.train.Example`` as protobuf message classes, without TensorFlow.

The schema is TensorFlow's (tensorflow/core/example/feature.proto and example.proto,
package ``tensorflow``), declared here field for field so that protobuf's C parser
(upb, installed with MLflow) reads and writes the records::

    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    Features  { map<string, Feature> feature = 1; }
    Example   { Features features = 1; }

A parser accepts packed and unpacked repeated scalars alike, as TensorFlow's does.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="algoperf/tensorflow_example.proto", package="tensorflow", syntax="proto3"
    )

    def message(name: str) -> descriptor_pb2.DescriptorProto:
        m = file.message_type.add()
        m.name = name
        return m

    def field(m: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int,
              label: int = _F.LABEL_OPTIONAL, type_name: str = "") -> descriptor_pb2.FieldDescriptorProto:
        f = m.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            f.type_name = type_name
        return f

    field(message("BytesList"), "value", 1, _F.TYPE_BYTES, _F.LABEL_REPEATED)
    field(message("FloatList"), "value", 1, _F.TYPE_FLOAT, _F.LABEL_REPEATED).options.packed = True
    field(message("Int64List"), "value", 1, _F.TYPE_INT64, _F.LABEL_REPEATED).options.packed = True
    feature = message("Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, kind) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), start=1
    ):
        field(feature, name, number, _F.TYPE_MESSAGE, type_name=f".tensorflow.{kind}").oneof_index = 0
    features = message("Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, _F.TYPE_STRING)
    field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    field(features, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".tensorflow.Features.FeatureEntry")
    field(message("Example"), "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    return file


# A private pool: never clashes with a TensorFlow imported into the same process.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
Feature = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Feature"))
