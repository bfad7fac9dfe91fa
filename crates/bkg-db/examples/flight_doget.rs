//! Reads a query's result over Flight SQL as fast as a Rust client can, and reports rows/s and
//! GB/s (Arrow bytes as decoded, and bytes on the wire). Used by `benches/flight/compare.sh`.
//!
//!     flight_doget <grpc://host:port> <user> <password> <query> [runs]
use std::time::Instant;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::StreamExt;
use tonic::transport::Endpoint;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, user, password, query, rest @ ..] = args.as_slice() else {
        eprintln!("usage: flight_doget <grpc://host:port> <user> <password> <query> [runs]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let channel = Endpoint::from_shared(url.replacen("grpc://", "http://", 1))?
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(user, password).await?;
    for _ in 0..runs {
        let started = Instant::now();
        let info = client.execute(query.clone(), None).await?;
        let (mut rows, mut bytes) = (0usize, 0usize);
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
            let mut stream = client.do_get(ticket).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                bytes += batch.columns().iter().map(|c| array_bytes(&c.to_data())).sum::<usize>();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{{\"rows\": {rows}, \"arrow_bytes\": {bytes}, \"seconds\": {secs:.4}, \"rows_per_s\": {:.0}, \"gb_per_s\": {:.3}}}",
            rows as f64 / secs,
            bytes as f64 / secs / 1e9
        );
    }
    Ok(())
}

/// The bytes an array's buffers hold for its rows (what pyarrow's `nbytes` counts).
fn array_bytes(data: &datafusion::arrow::array::ArrayData) -> usize {
    let own: usize = data.buffers().iter().map(|b| b.len()).sum();
    let nulls = data.nulls().map_or(0, |n| n.buffer().len());
    own + nulls + data.child_data().iter().map(array_bytes).sum::<usize>()
}
