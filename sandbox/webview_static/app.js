// The sandbox web view: renders the sandbox Slack workspace from /api/events (Server-Sent Events)
// and sends clicks and slash commands back through the web view's backend.
// Every piece of text from the workspace is put into the page with textContent / text nodes;
// nothing built from message text ever goes through innerHTML.
"use strict";

(function () {
  const state = {
    data: null,
    channel: null,
    user: localStorage.getItem("incidentbot.sandbox.user") || "U0ALICE",
    seen: {}, // channel id -> number of messages seen while selected
    cache: new Map(), // message key -> {sig, node}
    deployments: {}, // "ns/name" -> previous row
    history: [],
    historyAt: 0,
  };

  const EMOJI = {
    rotating_light: "🚨", white_check_mark: "✅", heavy_check_mark: "✔️", warning: "⚠️", fire: "🔥",
    eyes: "👀", x: "❌", hourglass: "⌛", hourglass_flowing_sand: "⏳", red_circle: "🔴",
    large_green_circle: "🟢", large_yellow_circle: "🟡", large_orange_circle: "🟠", green_circle: "🟢",
    yellow_circle: "🟡", orange_circle: "🟠", white_circle: "⚪", bell: "🔔", no_bell: "🔕",
    pager: "📟", chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉", memo: "📝",
    book: "📖", books: "📚", wrench: "🔧", hammer_and_wrench: "🛠️", tada: "🎉", thumbsup: "👍",
    "+1": "👍", thumbsdown: "👎", "-1": "👎", mag: "🔍", link: "🔗", clock1: "🕐", stopwatch: "⏱️",
    arrows_counterclockwise: "🔄", repeat: "🔁", rocket: "🚀", sos: "🆘", no_entry: "⛔",
    no_entry_sign: "🚫", information_source: "ℹ️", bulb: "💡", pushpin: "📌", siren: "🚨",
    construction: "🚧", zzz: "💤", skull: "💀", lock: "🔒", unlock: "🔓", speech_balloon: "💬",
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function decode(text) {
    return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  function emojify(text) {
    return String(text).replace(/:([a-z0-9_+-]+):/g, (all, name) => EMOJI[name] || all);
  }

  function safeUrl(url) {
    const value = String(url || "").trim();
    return /^(https?:|mailto:)/i.test(value) ? value : null;
  }

  // ---------------------------------------------------------------- names

  function userName(id) {
    const u = (state.data.users || []).find((x) => x.id === id);
    return u ? u.name : id;
  }

  function channelName(id) {
    const c = (state.data.channels || []).find((x) => x.id === id);
    return c ? c.name : id;
  }

  function groupHandle(id) {
    const g = (state.data.usergroups || []).find((x) => x.id === id);
    return g ? g.handle : id;
  }

  function fileUrl(url) {
    // url_private of the sandbox Slack -> this web view's /files/ID
    const base = state.data.slack_base_url + "/files/";
    if (typeof url === "string" && url.startsWith(base)) {
      return "/files/" + encodeURIComponent(url.slice(base.length).split("/")[0]);
    }
    return safeUrl(url);
  }

  // ---------------------------------------------------------------- mrkdwn

  // Slack's control sequences inside < >: mentions, channels, special mentions, dates, links.
  function angle(token, parent) {
    const [target, ...rest] = token.split("|");
    const label = rest.length ? decode(rest.join("|")) : null;
    let m;
    if ((m = /^@([UW][A-Z0-9]+)$/.exec(target))) {
      parent.append(el("span", "mention", "@" + (label || userName(m[1]))));
    } else if ((m = /^#([CGD][A-Z0-9]+)$/.exec(target))) {
      parent.append(el("span", "mention", "#" + (label || channelName(m[1]))));
    } else if ((m = /^!subteam\^([A-Z0-9]+)$/.exec(target))) {
      const name = label || "@" + groupHandle(m[1]);
      parent.append(el("span", "mention", name.startsWith("@") ? name : "@" + name));
    } else if ((m = /^!(here|channel|everyone)$/.exec(target))) {
      parent.append(el("span", "mention", "@" + m[1]));
    } else if ((m = /^!date\^(\d+)\^/.exec(target))) {
      const span = el("span", "date", label || new Date(Number(m[1]) * 1000).toLocaleString());
      span.title = new Date(Number(m[1]) * 1000).toISOString();
      parent.append(span);
    } else {
      const href = safeUrl(decode(target));
      if (href) {
        const a = el("a", null, label || decode(target));
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        parent.append(a);
      } else {
        parent.append(document.createTextNode("<" + decode(token) + ">"));
      }
    }
  }

  const INLINE = new RegExp(
    [
      "`([^`\\n]+)`", // 1 inline code
      "<([^<>\\n]+)>", // 2 link / mention
      "(?<![\\w*])\\*(?!\\s)([^*\\n]+?)(?<!\\s)\\*(?![\\w*])", // 3 bold
      "(?<![\\w_])_(?!\\s)([^_\\n]+?)(?<!\\s)_(?![\\w_])", // 4 italic
      "(?<![\\w~])~(?!\\s)([^~\\n]+?)(?<!\\s)~(?![\\w~])", // 5 strike
    ].join("|"),
    "g",
  );

  function inline(text, parent) {
    let last = 0;
    const re = new RegExp(INLINE.source, "g");
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) parent.append(document.createTextNode(emojify(decode(text.slice(last, m.index)))));
      if (m[1] !== undefined) {
        parent.append(el("code", null, decode(m[1])));
      } else if (m[2] !== undefined) {
        angle(m[2], parent);
      } else {
        const tag = m[3] !== undefined ? "b" : m[4] !== undefined ? "i" : "s";
        const node = el(tag);
        inline(m[3] ?? m[4] ?? m[5], node);
        parent.append(node);
      }
      last = re.lastIndex;
    }
    if (last < text.length) parent.append(document.createTextNode(emojify(decode(text.slice(last)))));
  }

  const QUOTE = /^(?:>|&gt;) ?/;

  function lines(text, parent) {
    // Block quotes ("> " or "&gt; " at a line start) group into <blockquote>.
    const rows = text.split("\n");
    let quote = null;
    rows.forEach((row, i) => {
      if (QUOTE.test(row)) {
        if (!quote) {
          quote = el("blockquote");
          parent.append(quote);
        } else {
          quote.append(document.createTextNode("\n"));
        }
        inline(row.replace(QUOTE, ""), quote);
        return;
      }
      quote = null;
      inline(row, parent);
      if (i < rows.length - 1 && !QUOTE.test(rows[i + 1])) parent.append(document.createTextNode("\n"));
    });
  }

  function mrkdwn(text, parent) {
    // ```code blocks``` become <pre>; the rest goes line by line through the inline parser.
    const box = el("div", "mrkdwn");
    const source = String(text || "");
    const fence = /```([\s\S]*?)```/g;
    let last = 0;
    let m;
    while ((m = fence.exec(source)) !== null) {
      let before = source.slice(last, m.index);
      if (last) before = before.replace(/^\n/, "");
      before = before.replace(/\n$/, "");
      if (before) lines(before, box);
      box.append(el("pre", null, decode(m[1].replace(/^\n/, "").replace(/\n$/, ""))));
      last = fence.lastIndex;
    }
    if (last < source.length) lines(last ? source.slice(last).replace(/^\n/, "") : source, box);
    parent.append(box);
    return box;
  }

  function textObject(obj, parent) {
    if (!obj || typeof obj !== "object") return;
    if (obj.type === "mrkdwn") {
      mrkdwn(obj.text, parent);
    } else {
      const span = el("div", "mrkdwn", obj.emoji === false ? obj.text : emojify(obj.text || ""));
      parent.append(span);
    }
  }

  // ---------------------------------------------------------------- rich text

  function richElements(elements, parent) {
    for (const e of elements || []) {
      let node;
      if (e.type === "text") {
        node = document.createTextNode(e.text || "");
        const s = e.style || {};
        for (const [flag, tag] of [["code", "code"], ["bold", "b"], ["italic", "i"], ["strike", "s"]]) {
          if (s[flag]) {
            const wrap = el(tag);
            wrap.append(node);
            node = wrap;
          }
        }
      } else if (e.type === "link") {
        const href = safeUrl(e.url);
        node = el(href ? "a" : "span", null, e.text || e.url);
        if (href) {
          node.href = href;
          node.target = "_blank";
          node.rel = "noopener noreferrer";
        }
      } else if (e.type === "user") {
        node = el("span", "mention", "@" + userName(e.user_id));
      } else if (e.type === "channel") {
        node = el("span", "mention", "#" + channelName(e.channel_id));
      } else if (e.type === "usergroup") {
        node = el("span", "mention", "@" + groupHandle(e.usergroup_id));
      } else if (e.type === "broadcast") {
        node = el("span", "mention", "@" + e.range);
      } else if (e.type === "emoji") {
        node = document.createTextNode(e.unicode ? String.fromCodePoint(...e.unicode.split("-").map((h) => parseInt(h, 16))) : EMOJI[e.name] || ":" + e.name + ":");
      } else {
        node = document.createTextNode(e.text || "");
      }
      parent.append(node);
    }
  }

  function richText(block, parent) {
    const box = el("div", "mrkdwn");
    for (const part of block.elements || []) {
      if (part.type === "rich_text_section") {
        const div = el("div");
        richElements(part.elements, div);
        box.append(div);
      } else if (part.type === "rich_text_preformatted") {
        const pre = el("pre");
        richElements(part.elements, pre);
        box.append(pre);
      } else if (part.type === "rich_text_quote") {
        const q = el("blockquote");
        richElements(part.elements, q);
        box.append(q);
      } else if (part.type === "rich_text_list") {
        const list = el(part.style === "ordered" ? "ol" : "ul");
        for (const item of part.elements || []) {
          const li = el("li");
          richElements(item.elements, li);
          list.append(li);
        }
        box.append(list);
      }
    }
    parent.append(box);
  }

  // ---------------------------------------------------------------- Block Kit

  function image(src, alt, cls) {
    const url = typeof src === "string" && src.startsWith("/files/") ? src : fileUrl(src);
    if (!url) return el("span", "unsupported", "[image: " + (alt || "") + "]");
    const img = el("img", cls);
    img.src = url;
    img.alt = alt || "";
    img.loading = "lazy";
    return img;
  }

  function slackFileUrl(ref) {
    if (!ref) return null;
    if (ref.id && state.data.files[ref.id]) return state.data.files[ref.id].url;
    return ref.url || null;
  }

  function element(e, ctx) {
    if (e.type === "button") {
      const b = el("button", "bk-button" + (e.style ? " " + e.style : ""), emojify((e.text && e.text.text) || ""));
      b.type = "button";
      b.dataset.actionId = e.action_id || "";
      if (e.value !== undefined) b.dataset.value = e.value;
      b.addEventListener("click", () => press(b, e, ctx, null));
      return b;
    }
    if (e.type === "image") {
      return image(e.image_url || slackFileUrl(e.slack_file), e.alt_text, "accessory-image");
    }
    if (["static_select", "overflow", "radio_buttons"].includes(e.type)) {
      const select = el("select", "bk-select");
      select.dataset.actionId = e.action_id || "";
      const placeholder = el("option", null, e.type === "overflow" ? "⋯" : (e.placeholder && e.placeholder.text) || "Choose…");
      placeholder.value = "";
      select.append(placeholder);
      const options = [...(e.options || [])];
      for (const g of e.option_groups || []) options.push(...(g.options || []));
      for (const o of options) {
        const opt = el("option", null, (o.text && o.text.text) || o.value);
        opt.value = o.value;
        select.append(opt);
      }
      select.addEventListener("change", () => {
        if (select.value) press(select, e, ctx, select.value);
      });
      return select;
    }
    return el("span", "unsupported", "[" + e.type + "]");
  }

  function block(b, ctx) {
    const box = el("div", "block block-" + b.type);
    switch (b.type) {
      case "header":
        box.textContent = emojify((b.text && b.text.text) || "");
        break;
      case "section": {
        const main = el("div", "section-main");
        if (b.text) textObject(b.text, main);
        if (Array.isArray(b.fields) && b.fields.length) {
          const fields = el("div", "fields");
          for (const f of b.fields) {
            const cell = el("div", "field");
            textObject(f, cell);
            fields.append(cell);
          }
          main.append(fields);
        }
        box.append(main);
        if (b.accessory) box.append(element(b.accessory, ctx));
        break;
      }
      case "context":
        for (const e of b.elements || []) {
          if (e.type === "image") box.append(image(e.image_url || slackFileUrl(e.slack_file), e.alt_text));
          else textObject(e, box);
        }
        break;
      case "divider":
        return el("hr", "block block-divider");
      case "image": {
        if (b.title) box.append(el("div", "image-title", b.title.text));
        box.append(image(b.image_url || slackFileUrl(b.slack_file), b.alt_text));
        break;
      }
      case "actions":
        for (const e of b.elements || []) box.append(element(e, ctx));
        break;
      case "markdown":
        mrkdwn(b.text, box);
        break;
      case "rich_text":
        richText(b, box);
        break;
      case "file": {
        const f = state.data.files[b.file_id];
        box.append(f ? file(b.file_id) : el("span", "unsupported", "[file " + b.file_id + "]"));
        break;
      }
      default:
        box.append(el("span", "unsupported", "[" + b.type + " block]"));
    }
    return box;
  }

  function file(id) {
    const f = state.data.files[id];
    const box = el("div", "file");
    if (!f) {
      box.append(el("span", "unsupported", "[file " + id + "]"));
      return box;
    }
    box.append(el("div", "file-title", f.title || f.name));
    if (String(f.mimetype).startsWith("image/")) {
      const img = el("img");
      img.src = f.url;
      img.alt = f.alt || f.title || f.name;
      box.append(img);
    } else {
      const a = el("a", null, f.name);
      a.href = f.url;
      a.target = "_blank";
      box.append(a);
    }
    return box;
  }

  // ---------------------------------------------------------------- messages

  function messageNode(m, opts) {
    const ctx = { channel: m.channel || state.channel, ts: m.ts };
    const node = el("div", "msg");
    node.dataset.ts = m.ts;
    if (opts.reply) node.classList.add("reply");
    if (opts.ephemeral) node.classList.add("ephemeral");
    const system = m.subtype && m.subtype.startsWith("channel_");
    if (system) node.classList.add("system");
    const author = opts.ephemeral ? state.data.bot_user_id : m.user;
    const isBot = opts.ephemeral || m.bot || author === state.data.bot_user_id;
    const name = userName(author);
    const avatar = el("div", "avatar" + (isBot ? " bot" : ""), name.slice(0, 1).toUpperCase());
    node.append(avatar);
    const main = el("div", "main");
    if (!system) {
      const meta = el("div", "meta");
      meta.append(el("span", "author", name));
      if (isBot) meta.append(el("span", "app-tag", "APP"));
      const t = new Date(parseFloat(m.ts) * 1000);
      meta.append(el("span", "time", t.toLocaleTimeString()));
      if (m.edited) meta.append(el("span", "edited", "(edited)"));
      if (opts.ephemeral) meta.append(el("span", "only-you", "Only visible to you (@" + userName(m.user) + ")"));
      main.append(meta);
    }
    const body = el("div", "body");
    if (Array.isArray(m.blocks) && m.blocks.length) {
      for (const b of m.blocks) body.append(block(b, ctx));
    } else if (m.text) {
      mrkdwn(m.text, body);
    }
    for (const a of m.attachments || []) {
      const att = el("div", "attachment");
      if (a.color) att.style.borderLeftColor = /^#?[0-9a-fA-F]{3,6}$/.test(a.color) ? (a.color.startsWith("#") ? a.color : "#" + a.color) : "#ddd";
      if (a.title) att.append(el("div", "att-title", a.title));
      if (Array.isArray(a.blocks)) for (const b of a.blocks) att.append(block(b, ctx));
      else if (a.text) mrkdwn(a.text, att);
      for (const f of a.fields || []) {
        const row = el("div");
        row.append(el("b", null, f.title + ": "));
        row.append(document.createTextNode(f.value || ""));
        att.append(row);
      }
      body.append(att);
    }
    for (const id of m.files || []) body.append(file(id));
    if (m.reactions && Object.keys(m.reactions).length) {
      const r = el("div", "reactions");
      for (const [emoji, users] of Object.entries(m.reactions)) {
        r.append(el("span", "reaction", (EMOJI[emoji] || ":" + emoji + ":") + " " + users.length));
      }
      body.append(r);
    }
    main.append(body);
    node.append(main);
    return node;
  }

  function renderMessages() {
    const box = $("messages");
    const channel = state.data.channels.find((c) => c.id === state.channel);
    if (!channel) {
      box.replaceChildren(el("div", "empty", "No channel selected."));
      return;
    }
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const items = [];
    const replies = {};
    for (const m of channel.messages) {
      if (m.thread_ts && m.thread_ts !== m.ts) (replies[m.thread_ts] = replies[m.thread_ts] || []).push(m);
    }
    const ephemerals = state.data.ephemerals.filter((e) => e.channel === channel.id && e.user === state.user);
    const top = channel.messages
      .filter((m) => !(m.thread_ts && m.thread_ts !== m.ts && channel.messages.some((p) => p.ts === m.thread_ts)))
      .map((m) => ({ m, ephemeral: false }))
      .concat(ephemerals.filter((e) => !e.thread_ts).map((m) => ({ m, ephemeral: true })))
      .sort((a, b) => parseFloat(a.m.ts) - parseFloat(b.m.ts));
    for (const item of top) {
      items.push({ ...item, reply: false });
      for (const r of replies[item.m.ts] || []) items.push({ m: r, ephemeral: false, reply: true });
      for (const e of ephemerals.filter((x) => x.thread_ts === item.m.ts)) items.push({ m: e, ephemeral: true, reply: true });
    }
    const nodes = [];
    const keep = new Map();
    for (const item of items) {
      const key = (item.ephemeral ? "e" : "m") + channel.id + item.m.ts;
      const sig = JSON.stringify([item.m, item.reply, state.user, Object.keys(state.data.files).length]);
      const cached = state.cache.get(key);
      const node = cached && cached.sig === sig ? cached.node : messageNode({ ...item.m, channel: channel.id }, item);
      keep.set(key, { sig, node });
      nodes.push(node);
    }
    state.cache = keep;
    if (!nodes.length) nodes.push(el("div", "empty", "No messages yet."));
    box.replaceChildren(...nodes);
    if (nearBottom) box.scrollTop = box.scrollHeight;
  }

  // ---------------------------------------------------------------- sidebar, cluster, header

  function renderChannels() {
    const list = $("channels");
    const nodes = [];
    for (const c of state.data.channels) {
      if (c.is_im && !c.messages.length) continue;
      const li = el("li");
      const b = el("button", c.id === state.channel ? "selected" : "");
      b.type = "button";
      b.dataset.channelId = c.id;
      b.dataset.channelName = c.name;
      if (c.is_archived) b.classList.add("archived");
      b.append(el("span", "prefix", c.is_im ? "" : c.is_private ? "🔒" : "#"));
      b.append(el("span", "name", c.name));
      const count = c.messages.filter((m) => !(m.subtype || "").startsWith("channel_")).length;
      const unseen = count - (state.seen[c.id] || 0);
      if (c.id !== state.channel && unseen > 0) {
        b.classList.add("unread");
        b.append(el("span", "badge", unseen));
      }
      b.addEventListener("click", () => selectChannel(c.id));
      li.append(b);
      nodes.push(li);
    }
    list.replaceChildren(...nodes);
    const channel = state.data.channels.find((c) => c.id === state.channel);
    $("channel-title").textContent = channel ? (channel.is_im ? "" : "#") + channel.name : "";
    $("channel-topic").textContent = channel ? channel.topic : "";
    if (channel) state.seen[channel.id] = channel.messages.filter((m) => !(m.subtype || "").startsWith("channel_")).length;
  }

  function renderAlerts() {
    const list = $("alerts");
    if (list.dataset.rendered === JSON.stringify(state.data.alerts)) return;
    list.dataset.rendered = JSON.stringify(state.data.alerts);
    list.replaceChildren(
      ...state.data.alerts.map((a) => {
        const li = el("li");
        li.dataset.alert = a.name;
        li.append(el("div", "alert-name", a.name + " · " + a.system));
        li.append(el("div", "alert-summary", a.summary));
        for (const verb of ["fire", "resolve"]) {
          const b = el("button", verb, verb === "fire" ? "Fire" : "Resolve");
          b.type = "button";
          b.dataset.testid = verb + "-" + a.name;
          b.addEventListener("click", () => alertAction(b, a, verb));
          li.append(b);
        }
        return li;
      }),
    );
  }

  function renderDeployments() {
    const body = $("deployments");
    const rows = [];
    const previous = state.deployments;
    const next = {};
    for (const d of state.data.deployments) {
      const key = d.namespace + "/" + d.name;
      next[key] = d;
      const old = previous[key];
      const changed = (field) => old && JSON.stringify(old[field]) !== JSON.stringify(d[field]);
      const tr = el("tr");
      tr.dataset.deployment = key;
      tr.dataset.replicas = d.replicas;
      tr.dataset.ready = d.ready;
      tr.dataset.revision = d.revision;
      const name = el("td");
      name.append(el("div", "ns", d.namespace));
      name.append(el("div", "dep-name", d.name));
      if (d.maintenance_mode !== null) {
        const mm = el("span", "maint", "MAINTENANCE_MODE=" + d.maintenance_mode);
        mm.dataset.field = "maintenance";
        if (changed("maintenance_mode")) mm.classList.add("changed");
        name.append(mm);
      }
      const ready = el("td", "replicas" + (d.ready < d.replicas ? " not-ready" : ""), d.ready + " / " + d.replicas);
      ready.dataset.field = "replicas";
      if (changed("replicas") || changed("ready")) ready.classList.add("changed");
      const rev = el("td", "revision", d.revision);
      rev.dataset.field = "revision";
      if (changed("revision")) rev.classList.add("changed");
      const img = el("td", "image", d.images.join("\n"));
      if (changed("images")) img.classList.add("changed");
      tr.append(name, ready, rev, img);
      rows.push(tr);
    }
    state.deployments = next;
    // Rebuild only when something changed, so highlights are not restarted on every event.
    const sig = JSON.stringify(state.data.deployments);
    if (body.dataset.sig !== sig) {
      body.dataset.sig = sig;
      body.replaceChildren(...rows);
    }
  }

  function renderPagerDuty() {
    const list = $("pagerduty");
    const incidents = state.data.pagerduty || [];
    const sig = JSON.stringify(incidents);
    if (list.dataset.sig === sig) return;
    list.dataset.sig = sig;
    if (!incidents.length) {
      list.replaceChildren(el("li", "pd-empty", "No PagerDuty incident yet."));
      return;
    }
    list.replaceChildren(
      ...incidents.map((i) => {
        const li = el("li", "pd-incident pd-" + i.status);
        li.dataset.number = i.number;
        li.dataset.status = i.status;
        li.append(el("div", "pd-title", "#" + i.number + " " + i.title));
        const who = i.assignees.length ? " · " + i.assignees.join(", ") : "";
        li.append(el("div", "pd-meta", i.status + " · " + i.urgency + " urgency · " + i.service + who));
        for (const n of i.notes) li.append(el("div", "pd-note", "📝 " + n.by + ": " + n.content));
        if (i.note_count > i.notes.length) li.append(el("div", "pd-note", "… " + i.note_count + " notes in all"));
        return li;
      }),
    );
  }

  function renderUsers() {
    const picker = $("user-picker");
    const humans = state.data.users.filter((u) => !u.is_bot);
    const sig = JSON.stringify(humans);
    if (picker.dataset.sig === sig) return;
    picker.dataset.sig = sig;
    if (!humans.some((u) => u.id === state.user) && humans.length) state.user = humans[0].id;
    picker.replaceChildren(
      ...humans.map((u) => {
        const o = el("option", null, "@" + u.name + " (" + u.real_name + ")");
        o.value = u.id;
        return o;
      }),
    );
    picker.value = state.user;
  }

  function render() {
    if (!state.data) return;
    $("team").textContent = state.data.team.name + " workspace";
    if (!state.channel || !state.data.channels.some((c) => c.id === state.channel)) {
      const fromHash = decodeURIComponent(location.hash.slice(1));
      const wanted = state.data.channels.find((c) => c.id === fromHash);
      state.channel = wanted ? wanted.id : state.data.incident_channel || (state.data.channels[0] || {}).id;
    }
    renderUsers();
    renderChannels();
    renderAlerts();
    renderDeployments();
    renderPagerDuty();
    renderMessages();
  }

  function selectChannel(id) {
    state.channel = id;
    history.replaceState(null, "", "#" + encodeURIComponent(id));
    const box = $("messages");
    box.replaceChildren();
    render();
    box.scrollTop = box.scrollHeight;
  }

  // ---------------------------------------------------------------- actions

  function status(text, error) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", !!error);
  }

  async function post(path, body) {
    const resp = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await resp.json();
    } catch (err) {
      data = {};
    }
    return { ok: resp.ok, status: resp.status, data };
  }

  function confirmFirst(confirm) {
    if (!confirm) return Promise.resolve(true);
    return new Promise((resolve) => {
      const modal = $("modal");
      $("modal-title").textContent = (confirm.title && confirm.title.text) || "Are you sure?";
      const text = $("modal-text");
      text.replaceChildren();
      textObject(confirm.text, text);
      const ok = $("modal-confirm");
      const deny = $("modal-deny");
      ok.textContent = (confirm.confirm && confirm.confirm.text) || "Yes";
      deny.textContent = (confirm.deny && confirm.deny.text) || "Cancel";
      ok.className = confirm.style === "danger" ? "danger" : "primary";
      const done = (answer) => {
        modal.hidden = true;
        ok.onclick = null;
        deny.onclick = null;
        resolve(answer);
      };
      ok.onclick = () => done(true);
      deny.onclick = () => done(false);
      modal.hidden = false;
      ok.focus();
    });
  }

  async function press(node, e, ctx, value) {
    if (!(await confirmFirst(e.confirm))) return;
    const href = e.url && safeUrl(e.url);
    if (href) window.open(href, "_blank", "noopener");
    node.disabled = true;
    const label = (e.text && e.text.text) || e.action_id;
    status("clicking “" + label + "” as @" + userName(state.user) + " …");
    try {
      const r = await post("/api/click", {
        action_id: e.action_id,
        channel_id: ctx.channel,
        message_ts: ctx.ts,
        user_id: state.user,
        value: value,
      });
      const bot = r.data.status;
      if (!r.ok) status("click failed: " + (r.data.error || r.status), true);
      else if (bot !== 200) status("“" + label + "”: the bot answered HTTP " + bot + " " + (r.data.body || ""), true);
      else status("clicked “" + label + "” as @" + userName(state.user));
    } catch (err) {
      status("click failed: " + err, true);
    } finally {
      node.disabled = false;
    }
  }

  async function alertAction(button, alert, verb) {
    button.disabled = true;
    status((verb === "fire" ? "firing " : "resolving ") + alert.name + " (" + alert.system + ") …");
    try {
      const r = await post("/api/alerts/" + alert.index + "/" + verb, {});
      if (!r.ok || r.data.status >= 300) status(verb + " " + alert.name + " failed: " + (r.data.error || "HTTP " + r.data.status), true);
      else status((verb === "fire" ? "fired " : "resolved ") + alert.name + " (Alertmanager webhook answered " + r.data.status + ")");
    } catch (err) {
      status(verb + " failed: " + err, true);
    } finally {
      button.disabled = false;
    }
  }

  async function sendCommand(ev) {
    ev.preventDefault();
    const input = $("command-input");
    const line = input.value.trim();
    if (!line) return;
    if (!line.startsWith("/")) {
      status("type a slash command, e.g. /incident help", true);
      return;
    }
    state.history.push(line);
    state.historyAt = state.history.length;
    status("sending " + line + " as @" + userName(state.user) + " in #" + channelName(state.channel) + " …");
    try {
      const r = await post("/api/command", { text: line, user_id: state.user, channel_id: state.channel });
      if (!r.ok) status("command failed: " + (r.data.error || r.status), true);
      else if (r.data.status !== 200) status(line + ": the bot answered HTTP " + r.data.status + " " + (r.data.body || ""), true);
      else {
        status("sent " + line + " as @" + userName(state.user));
        input.value = "";
      }
    } catch (err) {
      status("command failed: " + err, true);
    }
  }

  function commandKeys(ev) {
    const input = $("command-input");
    if (ev.key === "ArrowUp" && state.historyAt > 0) {
      state.historyAt -= 1;
      input.value = state.history[state.historyAt];
      ev.preventDefault();
    } else if (ev.key === "ArrowDown" && state.historyAt < state.history.length) {
      state.historyAt += 1;
      input.value = state.history[state.historyAt] || "";
      ev.preventDefault();
    }
  }

  // ---------------------------------------------------------------- live updates

  function live(mode, text) {
    const l = $("live");
    l.dataset.state = mode;
    l.textContent = text;
  }

  function accept(json) {
    if (!state.data) {
      // What was there before the page opened is not "unread".
      for (const c of json.channels) state.seen[c.id] = c.messages.filter((m) => !(m.subtype || "").startsWith("channel_")).length;
    }
    state.data = json;
    render();
  }

  function poll() {
    fetch("/api/state", { cache: "no-store" })
      .then((r) => r.json())
      .then((json) => {
        live("live", "live (polling)");
        accept(json);
      })
      .catch(() => live("offline", "offline"))
      .finally(() => setTimeout(poll, 500));
  }

  function connect() {
    if (typeof EventSource === "undefined") {
      poll();
      return;
    }
    const source = new EventSource("/api/events");
    source.addEventListener("state", (ev) => {
      live("live", "live");
      accept(JSON.parse(ev.data));
    });
    source.onerror = () => live("offline", "reconnecting…");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("user-picker").addEventListener("change", (ev) => {
      state.user = ev.target.value;
      localStorage.setItem("incidentbot.sandbox.user", state.user);
      state.cache.clear();
      render();
    });
    $("command-form").addEventListener("submit", sendCommand);
    $("command-input").addEventListener("keydown", commandKeys);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !$("modal").hidden) $("modal-deny").click();
    });
    connect();
  });
})();
