# Reference values for the BLIP/ALBEF pre-training objectives (tests/Vlm.Training.Tests/Blip/PretrainObjectiveTests.cs).
# Implements, from fixed inputs, the losses of salesforce/BLIP models/blip_pretrain.py (ITC with momentum
# features, queues and soft targets; ITM over [pos, (text, neg image), (neg text, image)]; LM with label smoothing 0.1),
# the idx-aware targets of models/blip_retrieval.py, and the momentum update; writes losses and gradients.
# Run: /usr/bin/python3 pretrain_refs.py  (torch 1.13) -> pretrain_refs.safetensors beside this file.
import os
import torch
import torch.nn.functional as F
import json
import struct

torch.manual_seed(0)
out = {}
B, E, Q, D, V, T = 4, 8, 6, 12, 11, 7


def itc(img_raw, txt_raw, img_m, txt_m, img_q, txt_q, temp, alpha, idx=None, idx_q=None):
    image_feat = F.normalize(img_raw, dim=-1)
    text_feat = F.normalize(txt_raw, dim=-1)
    with torch.no_grad():
        image_feat_all = torch.cat([img_m.t(), img_q.t()], dim=1)
        text_feat_all = torch.cat([txt_m.t(), txt_q.t()], dim=1)
        sim_i2t_m = img_m @ text_feat_all / temp
        sim_t2i_m = txt_m @ image_feat_all / temp
        if idx is None:
            sim_targets = torch.zeros(sim_i2t_m.size())
            sim_targets.fill_diagonal_(1)
        else:
            idx = idx.view(-1, 1)
            idx_all = torch.cat([idx.t(), idx_q.view(1, -1)], dim=1)
            pos_idx = torch.eq(idx, idx_all).float()
            sim_targets = pos_idx / pos_idx.sum(1, keepdim=True)
        sim_i2t_targets = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * sim_targets
        sim_t2i_targets = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * sim_targets
    sim_i2t = image_feat @ text_feat_all / temp
    sim_t2i = text_feat @ image_feat_all / temp
    loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * sim_i2t_targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * sim_t2i_targets, dim=1).mean()
    return (loss_i2t + loss_t2i) / 2, sim_i2t.detach(), sim_t2i.detach()


def neg_weights(sim, idx=None):
    bs = sim.size(0)
    w = F.softmax(sim[:, :bs], dim=1) + 1e-4
    if idx is None:
        w.fill_diagonal_(0)
    else:
        w.masked_fill_(torch.eq(idx.view(-1, 1), idx.view(1, -1)), 0)
    return w


img_m = F.normalize(torch.randn(B, E), dim=-1)
txt_m = F.normalize(torch.randn(B, E), dim=-1)
img_q = F.normalize(torch.randn(Q, E), dim=-1)
txt_q = F.normalize(torch.randn(Q, E), dim=-1)
img_raw0 = torch.randn(B, E)
txt_raw0 = torch.randn(B, E)
out.update({"itc.img_m": img_m, "itc.txt_m": txt_m, "itc.img_q": img_q, "itc.txt_q": txt_q,
            "itc.img_raw": img_raw0, "itc.txt_raw": txt_raw0})
idx = torch.tensor([0, 1, 0, 2])
idx_q = torch.tensor([1, -100, 0, 3, -100, 2])
out["itc.idx"] = idx
out["itc.idx_q"] = idx_q
for name, (a, i, iq) in {"diag": (0.4, None, None), "idx": (0.4, idx, idx_q), "alpha0": (0.0, None, None)}.items():
    img_raw = img_raw0.clone().requires_grad_()
    txt_raw = txt_raw0.clone().requires_grad_()
    temp = torch.tensor(0.07, requires_grad=True)
    loss, s_i2t, s_t2i = itc(img_raw, txt_raw, img_m, txt_m, img_q, txt_q, temp, a, i, iq)
    loss.backward()
    out[f"itc.{name}.loss"] = loss.detach().reshape(1)
    out[f"itc.{name}.grad_img"] = img_raw.grad
    out[f"itc.{name}.grad_txt"] = txt_raw.grad
    out[f"itc.{name}.grad_temp"] = temp.grad.reshape(1)
    out[f"itc.{name}.sim_i2t"] = s_i2t
    out[f"itc.{name}.sim_t2i"] = s_t2i
    out[f"itc.{name}.w_t2i"] = neg_weights(s_t2i, i)
    out[f"itc.{name}.w_i2t"] = neg_weights(s_i2t, i)

# ITM with fixed negatives; the fusion is a stand-in (tanh(text + image)) so only the batch assembly, labels and
# CE are under test (the real fusion is the text encoder, tested by the BLIP fixtures).
text_emb = torch.randn(B, D, requires_grad=True)
image_emb = torch.randn(B, D, requires_grad=True)
W = (0.3 * torch.randn(2, D)).requires_grad_()
b = (0.1 * torch.randn(2)).requires_grad_()
neg_img = torch.tensor([2, 0, 3, 1])   # per text
neg_txt = torch.tensor([1, 3, 1, 0])   # per image
out.update({"itm.text_emb": text_emb.detach().clone(), "itm.image_emb": image_emb.detach().clone(), "itm.W": W.detach().clone(),
            "itm.b": b.detach().clone(), "itm.neg_img": neg_img, "itm.neg_txt": neg_txt})
fuse = lambda t, i: torch.tanh(t + i)
out_pos = fuse(text_emb, image_emb)
text_all = torch.cat([text_emb, text_emb[neg_txt]], dim=0)
image_all = torch.cat([image_emb[neg_img], image_emb], dim=0)
out_neg = fuse(text_all, image_all)
vl = torch.cat([out_pos, out_neg], dim=0) @ W.t() + b
labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
loss_itm = F.cross_entropy(vl, labels)
loss_itm.backward()
out.update({"itm.loss": loss_itm.detach().reshape(1), "itm.logits": vl.detach(), "itm.grad_text": text_emb.grad,
            "itm.grad_image": image_emb.grad, "itm.grad_W": W.grad, "itm.grad_b": b.grad})

# LM: decoder inputs ([DEC] first, pad -> -100) and the shifted CE with label smoothing 0.1.
PAD, BOS = 0, 10
ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 4, 2, 0, 0, 0, 0], [1, 9, 8, 7, 6, 5, 2], [1, 3, 3, 2, 0, 0, 0]])
dec = ids.clone()
dec[:, 0] = BOS
targets = dec.masked_fill(dec == PAD, -100)
logits = torch.randn(4, T, V, requires_grad=True)
out["lm.ids"] = ids
out["lm.logits"] = logits.detach().clone()
out["lm.dec_ids"] = dec
out["lm.labels"] = targets
lm = F.cross_entropy(logits[:, :-1, :].reshape(-1, V), targets[:, 1:].reshape(-1), label_smoothing=0.1)
lm.backward()
out["lm.loss"] = lm.detach().reshape(1)
out["lm.grad_logits"] = logits.grad
# with a 3-token prompt masked as BLIP's captioning fine-tune
t2 = targets.clone()
t2[:, :3] = -100
out["lm.prompt_labels"] = t2
out["lm.prompt_loss"] = F.cross_entropy(logits.detach()[:, :-1, :].reshape(-1, V), t2[:, 1:].reshape(-1), label_smoothing=0.1).reshape(1)

# label smoothing alone, and plain CE for contrast
x = torch.randn(9, V)
y = torch.tensor([0, 3, -100, 10, 5, 5, -100, 1, 7])
out["ls.x"] = x
out["ls.y"] = y
out["ls.loss"] = F.cross_entropy(x, y, label_smoothing=0.1).reshape(1)
out["ls.loss_plain"] = F.cross_entropy(x, y).reshape(1)

# momentum update: param_m = param_m * m + param * (1 - m)
pm = torch.randn(1000)
p = torch.randn(1000)
out["ema.param_m"] = pm.clone()
out["ema.param"] = p
out["ema.updated"] = pm * 0.995 + p * (1. - 0.995)



def save(path, tensors):
    # a minimal safetensors writer (the Debian image has no safetensors package)
    dt = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for blob in blobs:
            f.write(blob)


save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain_refs.safetensors"), out)
print("wrote", len(out), "tensors")
