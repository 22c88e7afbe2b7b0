import sys, time, math, collections, re, os, json
import torch
from transformers import LlamaConfig, LlamaForCausalLM
sys.path.insert(0, "src")
from mgrpo.data.arithmetic import make_problems, worked_solution
from mgrpo.models.tokenizer import build_char_tokenizer
dev = "cuda" if torch.cuda.is_available() else "cpu"
TEMPLATE = "Q:{question}=?\nA:"
ALPH = "0123456789+-*=?:,.\\{}boxedQA\n"
tok = build_char_tokenizer(ALPH)
OUT = os.environ.get("OUT", "/tmp")
def boxed(s):
    m = re.findall(r"\\boxed\{(-?\d+)\}", s); return m[-1] if m else None
import random
from mgrpo.data.arithmetic import solution_steps, evaluate_expression
def rewrite_solution(rec):
    ops_, q = [], rec.question
    import re as _re
    toks = _re.findall(r"\d+|[+-]", q)
    vals = [int(t) for t in toks[0::2]]; opl = toks[1::2]
    parts = []
    while opl:
        a, op, b = vals[0], opl[0], vals[1]
        v = a + b if op == "+" else a - b
        vals = [v] + vals[2:]; opl = opl[1:]
        parts.append(str(vals[0]) + "".join(o + str(x) for o, x in zip(opl, vals[1:])))
    return "=".join(parts) + ".\\boxed{" + rec.answer + "}"
def run(name, H=128, L=4, I=None, steps=300, bs=64, lr=3e-3, easy=(2,3,9), ops="+-", evals=(), temps=(1.0,), mix=None, fmt="chain"):
    sol = worked_solution if fmt == "chain" else rewrite_solution
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=H, num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2,
      intermediate_size=I or 2*H, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(dev)
    mix = mix or [(1.0,) + tuple(easy)]
    train = []
    for j, (w, a, b, v) in enumerate(mix):
        train += make_problems(int(round(steps*bs*w)) + 1, seed=1 + j, min_operands=a, max_operands=b, max_value=v, ops=ops)
    random.Random(0).shuffle(train); train = train[:steps*bs]
    print(name, sol(train[0]), train[0].question)
    enc = []
    for rec in train:
        p = [1]+tok.encode(TEMPLATE.format(question=rec.question)); r = tok.encode(sol(rec)) + [2]; enc.append((p, r))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warm = max(1, steps//10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s+1)/warm) * 0.5*(1+math.cos(math.pi*min(s,steps)/steps)))
    t0 = time.time(); model.train(); losses=[]
    for step in range(steps):
        batch = enc[step*bs:(step+1)*bs]
        T = max(len(p)+len(r) for p,r in batch)
        ids = torch.zeros(bs, T, dtype=torch.long); lab = torch.full((bs, T), -100); att = torch.zeros(bs, T, dtype=torch.long)
        for i,(p,r) in enumerate(batch):
            s = p + r; ids[i,:len(s)] = torch.tensor(s); att[i,:len(s)] = 1; lab[i,len(p):len(s)] = torch.tensor(r)
        out = model(input_ids=ids.to(dev), attention_mask=att.to(dev), labels=lab.to(dev))
        out.loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step(); opt.zero_grad()
        losses.append(out.loss.item())
    res = dict(mix=mix, fmt=fmt, name=name, H=H, L=L, steps=steps, bs=bs, lr=lr, easy=easy, ops=ops, final_loss=sum(losses[-20:])/20, train_s=time.time()-t0, evals={})
    model.eval()
    for (a,b,v) in evals:
        recs = make_problems(200, seed=99, min_operands=a, max_operands=b, max_value=v, ops=ops)
        for temp in temps:
            G = 8
            prompts = [[1]+tok.encode(TEMPLATE.format(question=r.question)) for r in recs]
            Lp = max(map(len, prompts))
            ids = torch.tensor([[0]*(Lp-len(p))+p for p in prompts]); att = (ids != 0).long(); att[:, :] = torch.tensor([[0]*(Lp-len(p))+[1]*len(p) for p in prompts])
            ids = ids.repeat_interleave(G, 0).to(dev); att = att.repeat_interleave(G, 0).to(dev)
            torch.manual_seed(1)
            with torch.no_grad():
                out = model.generate(ids, attention_mask=att, do_sample=True, temperature=temp, top_k=0, top_p=1.0, max_new_tokens=80, eos_token_id=2, pad_token_id=0)
            texts = tok.batch_decode(out[:, Lp:], skip_special_tokens=True)
            acc = maj = 0
            for i, r in enumerate(recs):
                ans = [boxed(t) for t in texts[i*G:(i+1)*G]]
                acc += sum(x == r.answer for x in ans)/G
                c = collections.Counter(x for x in ans if x is not None)
                maj += bool(c) and c.most_common(1)[0][0] == r.answer
            res["evals"][f"{a}-{b}<={v}@T{temp}"] = (round(acc/len(recs),3), round(maj/len(recs),3))
        res["ex_"+f"{a}-{b}<={v}"] = texts[0]
    print(json.dumps(res), flush=True)
    with open(f"{OUT}/sweep.jsonl", "a") as f: f.write(json.dumps(res)+"\n")
EV = [(4,4,9),(2,3,9)]
M = lambda p: [(1-p, 2, 3, 9), (p, 4, 4, 9)]
CONFIGS = [
 dict(name="p1", mix=M(0.2)),
 dict(name="p2", mix=M(0.25)),
 dict(name="p3", mix=M(1/3), steps=200),
 dict(name="p4", mix=M(1/3), steps=150),
 dict(name="p5", mix=M(0.25), steps=250),
 dict(name="p6", mix=M(0.2), steps=250, lr=4e-3),
 dict(name="p7", mix=M(1/3)),
 dict(name="p8", mix=M(0.15)),
]
sel = sys.argv[1:]
for c in CONFIGS:
    if not sel or c["name"] in sel:
        run(evals=EV, temps=(1.0, 1.2), **c)
